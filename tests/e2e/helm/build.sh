#!/usr/bin/env bash
# Builds helm from its Go module (helm.sh/helm/v3, a pinned v3 release) with the local
# Go toolchain: no prebuilt downloads are possible here, only the Go module proxy.
#
# Output, cached outside the checkout so a second run is instant:
#   ${WFE_CACHE_DIR:-$HOME/.cache/wfe-admission}/helm-<version>/{helm,VERSION}
# and a symlink for people: ${WFE_CACHE_DIR:-$HOME/.cache/wfe-admission}/bin/helm
#
# Logs go to stderr; the last stdout line is the path of the helm binary.
# Idempotent and safe to run concurrently (a lock serialises builders).
#
# Usage: build.sh            (WFE_HELM_VERSION=v3.x.y overrides the pin)
set -euo pipefail

# Pinned release: the latest v3 on the module proxy when this was written. Its go.mod says
# `go 1.26.0` and has no replace directives, so `go install module@version` builds it as
# released, with exactly the dependency versions of its go.sum.
HELM_VERSION="${WFE_HELM_VERSION:-v3.22.0}"
# Bump when the recipe below changes, so stale caches are rebuilt.
RECIPE=1

CACHE_ROOT="${WFE_CACHE_DIR:-$HOME/.cache/wfe-admission}"
OUT="$CACHE_ROOT/helm-$HELM_VERSION"
BIN="$OUT/helm"
STAMP="$OUT/VERSION"
LINK_DIR="$CACHE_ROOT/bin"

log() { printf 'helm/build.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ "$HELM_VERSION" =~ ^v3\.[0-9]+\.[0-9]+$ ]] || die "WFE_HELM_VERSION must look like v3.x.y, not $HELM_VERSION"

# Never let the go command fetch another toolchain, nor pick up a go.work.
export GOTOOLCHAIN=local GOWORK=off
# A user's GOFLAGS (e.g. -mod=vendor) must not leak into this build.
export GOFLAGS="-buildvcs=false"
# Same as helm's Makefile: a static binary.
export CGO_ENABLED=0
GO_PARALLEL="${WFE_GO_PARALLEL:-2}"

want_stamp="$(printf 'helm=%s\nrecipe=%s\n' "$HELM_VERSION" "$RECIPE")"

is_fresh() {
  [[ -x "$BIN" && -f "$STAMP" ]] && [[ "$(grep -Ev '^(go|built)=' "$STAMP")" == "$want_stamp" ]]
}

# <cache>/bin/helm -> this build, replaced atomically (rename over the old link).
link_for_people() {
  mkdir -p "$LINK_DIR"
  local tmp="$LINK_DIR/.helm.$$"
  ln -sfn "$BIN" "$tmp"
  mv -fT "$tmp" "$LINK_DIR/helm"
}

finish() {
  link_for_people
  printf '%s\n' "$BIN"
  exit 0
}

# Fast path: no lock, no go command needed.
if is_fresh; then
  log "cached: $BIN ($HELM_VERSION)"
  finish
fi

mkdir -p "$OUT"
# Serialise concurrent builders (parallel test runs on one machine).
exec 9>"$CACHE_ROOT/.helm-build.lock"
flock 9
if is_fresh; then
  log "cached (built by a concurrent run): $BIN"
  finish
fi

command -v go >/dev/null 2>&1 || die "go is not installed (need go >= 1.26)"
go_version="$(go env GOVERSION)"
go_minor="$(sed -E 's/^go1\.([0-9]+).*/\1/' <<<"$go_version")"
[[ "$go_minor" =~ ^[0-9]+$ && "$go_minor" -ge 26 ]] ||
  die "$go_version is too old for helm $HELM_VERSION (needs go1.26+)"

# The Kubernetes version helm assumes for `lint` and `template` (Capabilities.KubeVersion)
# comes from its client-go; helm's Makefile passes it as ldflags, so do the same.
gomod="$(go mod download -json "helm.sh/helm/v3@$HELM_VERSION" |
  sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')"
[[ -f "$gomod" ]] || die "could not download helm.sh/helm/v3@$HELM_VERSION from the module proxy"
client_go="$(awk '$1 == "k8s.io/client-go" { print $2; exit }' "$gomod")"
[[ "$client_go" =~ ^v0\.([0-9]+)\.[0-9]+ ]] || die "no k8s.io/client-go version in $gomod"
k8s_minor="${BASH_REMATCH[1]}"

ldflags="-s -w"
ldflags+=" -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s_minor"
done

rm -f "$STAMP"
gobin="$OUT/.gobin"
rm -rf "$gobin"
start=$SECONDS
log "building helm $HELM_VERSION with $go_version (cold: a few minutes on 2 cores)"
GOBIN="$gobin" go install -p "$GO_PARALLEL" -trimpath -ldflags="$ldflags" \
  "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
mv -f "$gobin/helm" "$BIN"
rm -rf "$gobin"

reported="$("$BIN" version --template '{{.Version}}')"
[[ "$reported" == "$HELM_VERSION" ]] || die "built helm reports version $reported, want $HELM_VERSION"
# The stamp is written last: its presence means the binary is complete.
{
  printf '%s\n' "$want_stamp"
  printf 'go=%s\nbuilt=%s\n' "$go_version" "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
} >"$STAMP.tmp"
mv -f "$STAMP.tmp" "$STAMP"
log "helm $HELM_VERSION built in $((SECONDS - start)) s: $BIN (also $LINK_DIR/helm)"
finish
