#!/usr/bin/env bash
# Build promql-check (hack/crds/promql): Prometheus's own PromQL parser at a pinned release, which
# tests/chart/test_chart_promql.py feeds the chart's alert and dashboard expressions.
#
# The module's go.mod/go.sum pin github.com/prometheus/prometheus (v0.305.0 = Prometheus v3.5.0);
# dependencies come from the Go module proxy (`go build -mod=readonly`, nothing unpinned). The binary
# is cached per go.sum checksum:
#   ${GENJOB_TOOLS_CACHE:-$HOME/.cache/genjob/tools}/promql-check-<sha of go.sum>/promql-check
# First build: about a minute on 2 cores; then reused.
#
# Usage:
#   hack/crds/promql-check.sh               build if missing, print GENJOB_PROMQL_CHECK=<path>
#   hack/crds/promql-check.sh --print-env   print GENJOB_PROMQL_CHECK=<path> only (no build)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MODULE="$HERE/promql"
CACHE="${GENJOB_TOOLS_CACHE:-$HOME/.cache/genjob/tools}"
DEST="$CACHE/promql-check-$(sha256sum "$MODULE/go.sum" | cut -c1-12)"
BIN="$DEST/promql-check"

log() { printf '[promql-check] %s\n' "$*" >&2; }
die() { printf '[promql-check] ERROR: %s\n' "$*" >&2; exit 1; }

case "${1:-}" in
  --print-env) echo "GENJOB_PROMQL_CHECK=$BIN"; exit 0 ;;
  -h|--help) sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
  "") ;;
  *) die "unknown argument '$1' (see --help)" ;;
esac

if [[ -x "$BIN" ]]; then
  log "cached: $BIN"
else
  if ! command -v go >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then
    export PATH="/usr/local/go/bin:$PATH"
  fi
  command -v go >/dev/null 2>&1 || die "go is not on PATH (needed to build $MODULE)"
  log "go build $MODULE -> $BIN ..."
  mkdir -p "$DEST"
  (cd "$MODULE" && GOFLAGS='-mod=readonly -buildvcs=false' go build -trimpath -o "$BIN.tmp" .)
  mv "$BIN.tmp" "$BIN"
  log "built $BIN"
fi
echo "GENJOB_PROMQL_CHECK=$BIN"
