#!/usr/bin/env bash
# Fetch the KEDA and Karpenter CRD YAML that genjob's chart tests validate against.
#
# The CRDs come out of the projects' own Go modules at pinned versions (one place:
# hack/cluster/versions.env, KEDA_VERSION and KARPENTER_VERSION), downloaded with the
# ordinary `go mod download -json module@version` from the Go module proxy, and copied
# into a cache directory per module and version:
#   ${GENJOB_TOOLS_CACHE:-$HOME/.cache/genjob/tools}/crds-<name>-<version>/
#     crds-keda-<v>           github.com/kedacore/keda/v2       config/crd/bases
#     crds-karpenter-<v>      sigs.k8s.io/karpenter             pkg/apis/crds
#     crds-karpenter-aws-<v>  github.com/aws/karpenter-provider-aws pkg/apis/crds
#                             (EC2NodeClass, plus the NodePool CRD as the AWS provider ships it)
#     crds-prometheus-operator-<v>  github.com/prometheus-operator/prometheus-operator
#                             example/prometheus-operator-crd (ServiceMonitor, PodMonitor, PrometheusRule)
# Nothing is hand-copied or edited. Idempotent: a cached directory is reused.
#
# Usage:
#   hack/crds/fetch-crds.sh               fetch what is missing, print what it did
#   hack/crds/fetch-crds.sh --print-env   print GENJOB_CRDS_<NAME>=<dir> lines (no download)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=hack/cluster/versions.env disable=SC1091
source "$HERE/../cluster/versions.env"
CACHE="${GENJOB_TOOLS_CACHE:-$HOME/.cache/genjob/tools}"

# The chart's optional monitoring objects; not a cluster-harness tool, so pinned here.
PROMETHEUS_OPERATOR_VERSION="${PROMETHEUS_OPERATOR_VERSION:-v0.85.0}"

# name | module | version | directory inside the module | files
SOURCES=(
  "keda|github.com/kedacore/keda/v2|$KEDA_VERSION|config/crd/bases|*.yaml"
  "karpenter|sigs.k8s.io/karpenter|$KARPENTER_VERSION|pkg/apis/crds|*.yaml"
  "karpenter-aws|github.com/aws/karpenter-provider-aws|$KARPENTER_VERSION|pkg/apis/crds|*.yaml"
  "prometheus-operator|github.com/prometheus-operator/prometheus-operator|$PROMETHEUS_OPERATOR_VERSION|example/prometheus-operator-crd|monitoring.coreos.com_{servicemonitors,podmonitors,prometheusrules}.yaml"
)

log() { printf '[crds] %s\n' "$*" >&2; }
die() { printf '[crds] ERROR: %s\n' "$*" >&2; exit 1; }

print_env() {
  local entry name module version sub files
  for entry in "${SOURCES[@]}"; do
    IFS='|' read -r name module version sub files <<<"$entry"
    printf 'GENJOB_CRDS_%s=%s\n' "$(tr 'a-z-' 'A-Z_' <<<"$name")" "$CACHE/crds-$name-$version"
  done
}

fetch() {
  local name="$1" module="$2" version="$3" sub="$4" files="$5" dest src dir f scratch
  dest="$CACHE/crds-$name-$version"
  if [[ -d "$dest" ]] && compgen -G "$dest/*.yaml" >/dev/null; then
    log "$module@$version: cached in $dest ($(find "$dest" -name '*.yaml' | wc -l) files)"
    return
  fi
  if ! command -v go >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then
    export PATH="/usr/local/go/bin:$PATH"
  fi
  command -v go >/dev/null 2>&1 || die "go is not on PATH (needed to download $module@$version)"
  log "$module@$version: go mod download ..."
  # Outside any module, so the download never touches a go.mod of this repository.
  scratch="$(mktemp -d)"
  dir="$(cd "$scratch" && GOFLAGS=-mod=mod go mod download -json "$module@$version" \
          | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  rmdir "$scratch"
  src="$dir/$sub"
  [[ -d "$src" ]] || die "$module@$version has no directory $sub (download failed or layout changed)"
  rm -rf "$dest.tmp" && mkdir -p "$dest.tmp"
  for f in $(eval "echo $src/$files"); do
    [[ -f "$f" ]] || die "$module@$version has no file ${f#"$dir"/}"
    cp "$f" "$dest.tmp"/
  done
  chmod -R u+w "$dest.tmp"
  printf '%s@%s %s\n' "$module" "$version" "$sub" > "$dest.tmp/SOURCE"
  rm -rf "$dest" && mv "$dest.tmp" "$dest"
  log "$module@$version: copied $(find "$dest" -name '*.yaml' | wc -l) CRD files from $sub -> $dest"
}

main() {
  case "${1:-}" in
    --print-env) print_env; return ;;
    -h|--help) sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; return ;;
    "") ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
  mkdir -p "$CACHE"
  local entry name module version sub files
  for entry in "${SOURCES[@]}"; do
    IFS='|' read -r name module version sub files <<<"$entry"
    fetch "$name" "$module" "$version" "$sub" "$files"
  done
  print_env
}

main "$@"
