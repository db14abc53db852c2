#!/usr/bin/env bash
# Build (or reuse) the binaries of genjob's cluster test tier from Go modules.
#
# Compiles pinned versions (hack/cluster/versions.env) of etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubectl, kwok, helm, KEDA's operator and
# metrics adapter and Karpenter's kwok provider with the
# ordinary `go` client, and caches them by version under
#   ${GENJOB_TOOLS_CACHE:-$HOME/.cache/genjob/tools}/<name>-<version>/bin/
# Only what is missing is built, so a warm run takes seconds. It also copies
# kwok's stage files and the KEDA / Karpenter CRD YAML out of their modules.
#
# Usage:
#   hack/cluster/build-tools.sh                  build what is missing
#   hack/cluster/build-tools.sh --print-env      print the cache paths as KEY=value
#   hack/cluster/build-tools.sh --update-modules regenerate modules/*/go.mod after a version bump
#
# Environment: GENJOB_TOOLS_CACHE (cache root), GENJOB_AUTOSCALING_TOOLS=0 skips KEDA and
# Karpenter's kwok provider (the autoscaling tier), GOSUMDB/GOFLAGS as usual for go.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=hack/cluster/versions.env disable=SC1091
source "$HERE/versions.env"
CACHE="${GENJOB_TOOLS_CACHE:-$HOME/.cache/genjob/tools}"
export CGO_ENABLED=0

K8S_DIR="$CACHE/kubernetes-$KUBERNETES_VERSION"
ETCD_DIR="$CACHE/etcd-$ETCD_VERSION"
KWOK_DIR="$CACHE/kwok-$KWOK_VERSION"
HELM_DIR="$CACHE/helm-$HELM_VERSION"
KEDA_DIR="$CACHE/keda-$KEDA_VERSION"
KARPENTER_KWOK_DIR="$CACHE/karpenter-kwok-$KARPENTER_VERSION"
KEDA_CRDS="$CACHE/crds/keda-$KEDA_VERSION"
KARPENTER_CRDS="$CACHE/crds/karpenter-$KARPENTER_VERSION"
KARPENTER_KWOK_CRDS="$CACHE/crds/karpenter-kwok-$KARPENTER_VERSION"

SUMMARY=()

log() { printf '[tools] %s\n' "$*" >&2; }
die() { printf '[tools] ERROR: %s\n' "$*" >&2; exit 1; }
now() { date +%s; }

require_go() {
  if ! command -v go >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then
    export PATH="/usr/local/go/bin:$PATH"
  fi
  command -v go >/dev/null 2>&1 || die "go is not on PATH; install Go >= 1.26 (https://go.dev/doc/install) and retry"
}

size_of() { du -sh "$1" 2>/dev/null | cut -f1; }

# record NAME VERSION STATUS SECONDS
record() { SUMMARY+=("$(printf '%-24s %-9s %-7s %5ss' "$1" "$2" "$3" "$4")"); }

# module_dir NAME -> path of a downloaded module (go mod download), e.g. sigs.k8s.io/kwok@v0.8.0
module_dir() {
  local dir
  dir="$(go mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' || true)"
  [[ -d "$dir" ]] || die "could not download Go module $1 (is the Go module proxy reachable? try GOFLAGS=-mod=mod GOSUMDB=off)"
  printf '%s\n' "$dir"
}

# build_into OUT_FILE MODULE_DIR PACKAGE LDFLAGS: go build in a module, written atomically.
build_into() {
  local out="$1" moddir="$2" pkg="$3" ldflags="$4"
  mkdir -p "$(dirname "$out")"
  (cd "$moddir" && go build -trimpath -ldflags "$ldflags" -o "$out.tmp" "$pkg")
  mv -f "$out.tmp" "$out"
}

k8s_ldflags() {
  local v="$KUBERNETES_VERSION" minor ld="-s -w"
  minor="$(cut -d. -f2 <<<"${v#v}")"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $p.gitVersion=$v -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  done
  printf '%s' "$ld"
}

check_module_pin() {
  local gomod="$1" module="$2" version="$3"
  grep -Eq "^(require)?[[:space:]]*$module $version([[:space:]]|$)" "$gomod" \
    || die "$gomod does not pin $module $version (versions.env changed?); run: hack/cluster/build-tools.sh --update-modules"
}

build_kubernetes() {
  local moddir="$HERE/modules/kubernetes" ldflags c start
  check_module_pin "$moddir/go.mod" k8s.io/kubernetes "$KUBERNETES_VERSION"
  ldflags="$(k8s_ldflags)"
  for c in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    if [[ -x "$K8S_DIR/bin/$c" ]]; then
      log "$c $KUBERNETES_VERSION: cached"; record "$c" "$KUBERNETES_VERSION" cached 0; continue
    fi
    log "$c $KUBERNETES_VERSION: building (cold: several minutes on 2 cores) ..."
    start="$(now)"
    build_into "$K8S_DIR/bin/$c" "$moddir" "k8s.io/kubernetes/cmd/$c" "$ldflags"
    log "$c $KUBERNETES_VERSION: built in $(( $(now) - start ))s ($(size_of "$K8S_DIR/bin/$c"))"
    record "$c" "$KUBERNETES_VERSION" built "$(( $(now) - start ))"
  done
}

build_etcd() {
  local moddir="$HERE/modules/etcd" start
  if [[ -x "$ETCD_DIR/bin/etcd" ]]; then
    log "etcd $ETCD_VERSION: cached"; record etcd "$ETCD_VERSION" cached 0; return
  fi
  check_module_pin "$moddir/go.mod" go.etcd.io/etcd/server/v3 "$ETCD_VERSION"
  log "etcd $ETCD_VERSION: building ..."
  start="$(now)"
  build_into "$ETCD_DIR/bin/etcd" "$moddir" go.etcd.io/etcd/server/v3 "-s -w"
  log "etcd $ETCD_VERSION: built in $(( $(now) - start ))s ($(size_of "$ETCD_DIR/bin/etcd"))"
  record etcd "$ETCD_VERSION" built "$(( $(now) - start ))"
}

# go_install NAME DIR PACKAGE@VERSION LDFLAGS
go_install() {
  local name="$1" dir="$2" pkg="$3" ldflags="$4" start
  if [[ -x "$dir/bin/$name" ]]; then
    log "$name ${pkg#*@}: cached"; record "$name" "${pkg#*@}" cached 0; return
  fi
  log "$name ${pkg#*@}: go install $pkg ..."
  start="$(now)"
  mkdir -p "$dir/bin.tmp"
  GOBIN="$dir/bin.tmp" go install -trimpath -ldflags "$ldflags" "$pkg"
  rm -rf "${dir:?}/bin" && mv "$dir/bin.tmp" "$dir/bin"
  log "$name ${pkg#*@}: built in $(( $(now) - start ))s ($(size_of "$dir/bin/$name"))"
  record "$name" "${pkg#*@}" built "$(( $(now) - start ))"
}

build_kwok() {
  local v="${KWOK_VERSION#v}" kube="${KUBERNETES_VERSION#v}"
  go_install kwok "$KWOK_DIR" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" \
    "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$v -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=$kube"
  copy_kwok_stages
}

# kwok needs Stage objects (-c): the "fast" node and pod lifecycles plus node heartbeats.
copy_kwok_stages() {
  [[ -f "$KWOK_DIR/stages/stages.yaml" ]] && return
  local src tmp f
  src="$(module_dir "sigs.k8s.io/kwok@$KWOK_VERSION")/kustomize/stage"
  tmp="$KWOK_DIR/stages.tmp"
  rm -rf "$tmp" && mkdir -p "$tmp"
  for f in node/fast/node-initialize.yaml node/heartbeat/node-heartbeat.yaml \
           pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    [[ -f "$src/$f" ]] || die "kwok $KWOK_VERSION has no stage file $f; update copy_kwok_stages for this version"
    { printf -- '---\n# from sigs.k8s.io/kwok@%s kustomize/stage/%s\n' "$KWOK_VERSION" "$f"; cat "$src/$f"; } >> "$tmp/stages.yaml"
  done
  rm -rf "$KWOK_DIR/stages" && mv "$tmp" "$KWOK_DIR/stages"
  log "kwok $KWOK_VERSION: stage files -> $KWOK_DIR/stages/stages.yaml"
}

build_helm() {
  local minor ld
  minor="$(cut -d. -f2 <<<"${KUBERNETES_VERSION#v}")"
  ld="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  ld+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor"
  ld+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor"
  go_install helm "$HELM_DIR" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" "$ld"
}

# KEDA's operator and metrics adapter. Its go.mod has `replace` lines, so `go install pkg@v`
# refuses; build inside a writable copy of the downloaded module instead (cold: ~15 min, ~3 GB RSS).
build_keda() {
  local src work start c ld
  if [[ -x "$KEDA_DIR/bin/keda-operator" && -x "$KEDA_DIR/bin/keda-adapter" ]]; then
    log "keda $KEDA_VERSION: cached"; record keda "$KEDA_VERSION" cached 0; return
  fi
  log "keda $KEDA_VERSION: building operator and metrics adapter (cold: ~15 min on 2 cores) ..."
  start="$(now)"
  src="$(module_dir "github.com/kedacore/keda/v2@$KEDA_VERSION")"
  work="$CACHE/keda-src-$KEDA_VERSION"
  rm -rf "$work" && cp -r "$src" "$work" && chmod -R u+w "$work"
  ld="-s -w -X github.com/kedacore/keda/v2/version.Version=${KEDA_VERSION#v} -X github.com/kedacore/keda/v2/version.GitCommit=module-proxy"
  for c in operator adapter; do
    log "keda $KEDA_VERSION: go build ./cmd/$c ..."
    build_into "$KEDA_DIR/bin/keda-$c" "$work" "./cmd/$c" "$ld"
  done
  rm -rf "$work"
  log "keda $KEDA_VERSION: built in $(( $(now) - start ))s ($(size_of "$KEDA_DIR/bin"))"
  record keda "$KEDA_VERSION" built "$(( $(now) - start ))"
}

# Karpenter's kwok cloud provider (sigs.k8s.io/karpenter/kwok): real Karpenter decisions, kwok nodes.
build_karpenter_kwok() {
  local bin="$KARPENTER_KWOK_DIR/bin/karpenter-kwok" start
  if [[ -x "$bin" ]]; then
    log "karpenter-kwok $KARPENTER_VERSION: cached"; record karpenter-kwok "$KARPENTER_VERSION" cached 0; return
  fi
  log "karpenter-kwok $KARPENTER_VERSION: go install sigs.k8s.io/karpenter/kwok (cold: ~4 min) ..."
  start="$(now)"
  mkdir -p "$KARPENTER_KWOK_DIR/bin.tmp"
  GOBIN="$KARPENTER_KWOK_DIR/bin.tmp" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/karpenter/kwok@$KARPENTER_VERSION"
  mkdir -p "$(dirname "$bin")"
  mv -f "$KARPENTER_KWOK_DIR/bin.tmp/kwok" "$bin"
  rmdir "$KARPENTER_KWOK_DIR/bin.tmp"
  log "karpenter-kwok $KARPENTER_VERSION: built in $(( $(now) - start ))s ($(size_of "$bin"))"
  record karpenter-kwok "$KARPENTER_VERSION" built "$(( $(now) - start ))"
}

# copy_crds DEST MODULE@VERSION SUBDIR: the CRD YAML a module ships, for later test tiers.
copy_crds() {
  local dest="$1" mod="$2" sub="$3" src
  if [[ -d "$dest" ]]; then log "CRDs $mod $sub: cached"; return; fi
  src="$(module_dir "$mod")/$sub"
  [[ -d "$src" ]] || die "$mod has no $sub directory"
  mkdir -p "$dest.tmp" && cp "$src"/*.yaml "$dest.tmp"/ && chmod -R u+w "$dest.tmp"
  mv "$dest.tmp" "$dest"
  log "CRDs $mod: $(find "$dest" -name "*.yaml" | wc -l) files -> $dest"
}

# Regenerate modules/kubernetes (staging modules replaced by their v0.x tags) and modules/etcd.
update_modules() {
  local k8s_mod staging kdir="$HERE/modules/kubernetes" edir="$HERE/modules/etcd"
  staging="v0.${KUBERNETES_VERSION#v1.}"
  k8s_mod="$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
  [[ -f "$k8s_mod" ]] || die "could not download k8s.io/kubernetes@$KUBERNETES_VERSION"
  {
    echo "// Module genjob.io/tools/kubernetes pins k8s.io/kubernetes for building test binaries."
    echo "// Generated by hack/cluster/build-tools.sh --update-modules: upstream replaces its staging"
    echo "// modules with ./staging paths, so each one is replaced here by its published $staging tag."
    echo "module genjob.io/tools/kubernetes"; echo; echo "go 1.26.0"; echo
    echo "require k8s.io/kubernetes $KUBERNETES_VERSION"; echo; echo "replace ("
    sed -n "s#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\t\1 => \1 $staging#p" "$k8s_mod"
    echo ")"
  } > "$kdir/go.mod"
  rm -f "$kdir/go.sum"
  (cd "$kdir" && go mod tidy)
  sed -i "s#^require go.etcd.io/etcd/server/v3 .*#require go.etcd.io/etcd/server/v3 $ETCD_VERSION#" "$edir/go.mod"
  (cd "$edir" && go mod tidy)
  log "modules regenerated for kubernetes $KUBERNETES_VERSION and etcd $ETCD_VERSION; commit hack/cluster/modules/"
}

print_env() {
  cat <<EOF
GENJOB_TOOLS_CACHE=$CACHE
GENJOB_KUBERNETES_BIN=$K8S_DIR/bin
GENJOB_ETCD_BIN=$ETCD_DIR/bin
GENJOB_KWOK_BIN=$KWOK_DIR/bin
GENJOB_KWOK_STAGES=$KWOK_DIR/stages/stages.yaml
GENJOB_HELM_BIN=$HELM_DIR/bin
GENJOB_KEDA_CRDS=$KEDA_CRDS
GENJOB_KARPENTER_CRDS=$KARPENTER_CRDS
GENJOB_KARPENTER_KWOK_CRDS=$KARPENTER_KWOK_CRDS
GENJOB_KEDA_BIN=$KEDA_DIR/bin
GENJOB_KARPENTER_KWOK_BIN=$KARPENTER_KWOK_DIR/bin
EOF
}

main() {
  case "${1:-}" in
    --print-env) print_env; return ;;
    --update-modules) require_go; update_modules; return ;;
    -h|--help) sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; return ;;
    "") ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
  require_go
  local start; start="$(now)"
  log "cache: $CACHE ($(go version | cut -d' ' -f3), GOCACHE=$(go env GOCACHE))"
  mkdir -p "$CACHE"
  exec 9>"$CACHE/.lock"
  flock -n 9 || { log "another build-tools.sh holds $CACHE/.lock; waiting ..."; flock 9; }
  build_etcd
  build_kubernetes
  build_kwok
  build_helm
  if [[ "${GENJOB_AUTOSCALING_TOOLS:-1}" != 0 ]]; then
    build_karpenter_kwok
    build_keda
  fi
  copy_crds "$KEDA_CRDS" "github.com/kedacore/keda/v2@$KEDA_VERSION" config/crd/bases
  copy_crds "$KARPENTER_CRDS" "sigs.k8s.io/karpenter@$KARPENTER_VERSION" pkg/apis/crds
  copy_crds "$KARPENTER_KWOK_CRDS" "sigs.k8s.io/karpenter@$KARPENTER_VERSION" kwok/apis/crds
  log "summary:"
  printf '  %s\n' "${SUMMARY[@]}" >&2
  log "total $(( $(now) - start ))s; cache size $(size_of "$CACHE")"
}

main "$@"
exit $?  # stop reading here: editing this file during a run cannot affect the run
