#!/usr/bin/env bash
# Builds the binaries an end-to-end test needs from a real control plane:
# kube-apiserver and etcd, both compiled from the Go module proxy (no prebuilt
# downloads are possible here, and Debian's etcd is too old / apt-state dependent),
# and kubectl of the same release, for the commands the docs give admins.
#
# Output goes to a cache outside the checkout so a second run takes seconds:
#   ${WFE_CACHE_DIR:-$HOME/.cache/wfe-admission}/k8s-<version>/{kube-apiserver,etcd,VERSION}
#   and kubectl (stamped by kubectl.VERSION, so adding it left older caches valid)
# The Go module work dirs live under <cache>/src/ next to them.
#
# Logs go to stderr; the last stdout line is the directory holding the binaries.
# Idempotent and safe to run concurrently (a lock serialises builders).
set -euo pipefail

# Pinned releases. v1.37.2 builds with go1.26.8 (its go.mod says `go 1.26.0`).
# If a newer pin needs a newer Go, v1.36.3 / v1.35.4 are the fallbacks (untested).
KUBE_VERSION="${WFE_KUBE_VERSION:-v1.37.2}"
# etcd 3.6 builds from its module with go1.26.8 and serves this apiserver fully.
# Debian's 3.4.23 also starts, but it lacks RequestWatchProgress.
# (v1.37's own hack/lib/etcd.sh uses 3.7.0; WFE_ETCD_VERSION=v3.7.x overrides this.)
ETCD_VERSION="${WFE_ETCD_VERSION:-v3.6.16}"
# Bump when the recipe below changes, so stale caches are rebuilt.
RECIPE=1

CACHE_ROOT="${WFE_CACHE_DIR:-$HOME/.cache/wfe-admission}"
OUT="$CACHE_ROOT/k8s-$KUBE_VERSION"
STAMP="$OUT/VERSION"

log() { printf 'build.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Never let the go command fetch another toolchain, nor pick up a go.work.
export GOTOOLCHAIN=local GOWORK=off
# A user's GOFLAGS (e.g. -mod=vendor) must not leak into these builds.
export GOFLAGS="-buildvcs=false"
# The machines here have 2 cores; linking kube-apiserver alone peaks at ~2.5 GB RSS.
GO_PARALLEL="${WFE_GO_PARALLEL:-2}"

# What the binaries are. The Go version and build date are recorded in the stamp
# too, but only as information: a Go upgrade does not invalidate the cache.
want_stamp="$(printf 'kubernetes=%s\netcd=%s\nrecipe=%s\n' "$KUBE_VERSION" "$ETCD_VERSION" "$RECIPE")"

is_fresh() {
  [[ -x "$OUT/kube-apiserver" && -x "$OUT/etcd" && -f "$STAMP" ]] &&
    [[ "$(grep -Ev '^(go|built)=' "$STAMP")" == "$want_stamp" ]]
}
kubectl_fresh() {
  [[ -x "$OUT/kubectl" && "$(cat "$OUT/kubectl.VERSION" 2>/dev/null)" == "$want_stamp" ]]
}

# Fast path: no lock, no go command needed.
if is_fresh && kubectl_fresh; then
  log "cached: $OUT ($KUBE_VERSION, etcd $ETCD_VERSION)"
  printf '%s\n' "$OUT"
  exit 0
fi

mkdir -p "$OUT"
# Serialise concurrent builders (parallel test runs on one machine).
exec 9>"$CACHE_ROOT/.build.lock"
flock 9
if is_fresh && kubectl_fresh; then
  log "cached (built by a concurrent run): $OUT"
  printf '%s\n' "$OUT"
  exit 0
fi

command -v go >/dev/null 2>&1 || die "go is not installed (need go >= 1.26)"
go_version="$(go env GOVERSION)"
# Go >= the `go` line of k8s.io/kubernetes' go.mod is required; report it clearly.
go_minor="$(sed -E 's/^go1\.([0-9]+).*/\1/' <<<"$go_version")"
[[ "$go_minor" =~ ^[0-9]+$ && "$go_minor" -ge 26 ]] ||
  die "$go_version is too old for kubernetes $KUBE_VERSION (needs go1.26+)"

kube_minor_patch="${KUBE_VERSION#v1.}"     # 37.2
staging_version="v0.$kube_minor_patch"     # k8s.io/<staging> are tagged v0.<minor>.<patch>

# kube-apiserver or kubectl: a module requiring k8s.io/kubernetes, built from its cmd/<name>.
build_kube_command() {
  local cmd="$1" work="$OUT/src/$1" gomod staging m
  rm -rf "$work"
  mkdir -p "$work"
  cd "$work"

  # The release's go.mod replaces its staging modules with ./staging/src/...;
  # those replaces are ignored for a dependency, so we must map each one to its
  # published tag ourselves. Run outside any module (empty dir) to just fetch it.
  gomod="$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" |
    sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')"
  [[ -f "$gomod" ]] || die "could not download k8s.io/kubernetes@$KUBE_VERSION"
  mapfile -t staging < <(sed -E 's/^[[:space:]]*replace[[:space:]]+//' "$gomod" |
    awk '$2 == "=>" && $3 ~ /^\.\/staging\// { print $1 }')
  ((${#staging[@]} > 0)) || die "no staging replaces found in $gomod"
  log "kubernetes $KUBE_VERSION: mapping ${#staging[@]} staging modules to $staging_version"

  {
    printf 'module wfe-admission-e2e/%s\n\ngo 1.26.0\n\n' "$cmd"
    printf 'require k8s.io/kubernetes %s\n\n' "$KUBE_VERSION"
    for m in "${staging[@]}"; do
      printf 'replace %s => %s %s\n' "$m" "$m" "$staging_version"
    done
  } >go.mod
  # A build-tagged import makes `go mod tidy` resolve the command's dependencies.
  printf '//go:build tools\n\npackage tools\n\nimport _ "k8s.io/kubernetes/cmd/%s"\n' "$cmd" >tools.go
  go mod tidy >&2

  # Same version stamping as hack/lib/version.sh, so /version reports the release.
  local ldflags="-s -w" pkg key val
  local -a kv=("gitVersion=$KUBE_VERSION" "gitMajor=1" "gitMinor=${kube_minor_patch%%.*}"
    "gitTreeState=clean" "buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)")
  for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
    for key in "${kv[@]}"; do
      val="${key#*=}"
      ldflags+=" -X $pkg.${key%%=*}=$val"
    done
  done

  local start=$SECONDS
  log "building $cmd $KUBE_VERSION (cold: kube-apiserver ~5 min on 2 cores, ~2.5 GB RSS)"
  go build -p "$GO_PARALLEL" -trimpath -ldflags="$ldflags" \
    -o "$OUT/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd" >&2
  mv -f "$OUT/$cmd.tmp" "$OUT/$cmd"
  log "$cmd built in $((SECONDS - start)) s"
}

build_etcd() {
  local work="$OUT/src/etcd" m
  rm -rf "$work"
  mkdir -p "$work"
  cd "$work"
  # server/v3's own replaces (../api, ...) are ignored as a dependency, so pin the
  # sibling modules to the same release explicitly.
  {
    printf 'module wfe-admission-e2e/etcd\n\ngo 1.26.0\n\nrequire (\n'
    for m in go.etcd.io/etcd/server/v3 go.etcd.io/etcd/api/v3 go.etcd.io/etcd/client/pkg/v3 \
      go.etcd.io/etcd/client/v3 go.etcd.io/etcd/pkg/v3; do
      printf '\t%s %s\n' "$m" "$ETCD_VERSION"
    done
    printf ')\n'
  } >go.mod
  printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' >tools.go
  go mod tidy >&2
  local start=$SECONDS
  log "building etcd $ETCD_VERSION"
  go build -p "$GO_PARALLEL" -trimpath \
    -ldflags="-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$ETCD_VERSION" \
    -o "$OUT/etcd.tmp" go.etcd.io/etcd/server/v3 >&2
  mv -f "$OUT/etcd.tmp" "$OUT/etcd"
  log "etcd built in $((SECONDS - start)) s"
}

total_start=$SECONDS
if ! is_fresh; then
  rm -f "$STAMP"
  build_etcd
  build_kube_command kube-apiserver

  "$OUT/kube-apiserver" --version >&2
  "$OUT/etcd" --version | head -n 1 >&2
  # The stamp is written last: its presence means both binaries are complete.
  {
    printf '%s\n' "$want_stamp"
    printf 'go=%s\nbuilt=%s\n' "$go_version" "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  } >"$STAMP.tmp"
  mv -f "$STAMP.tmp" "$STAMP"
fi
if ! kubectl_fresh; then
  rm -f "$OUT/kubectl.VERSION"
  build_kube_command kubectl
  "$OUT/kubectl" version --client >&2
  printf '%s\n' "$want_stamp" >"$OUT/kubectl.VERSION"
fi
log "done in $((SECONDS - total_start)) s: $OUT"
printf '%s\n' "$OUT"
