#!/usr/bin/env bash
# Builds celcost (main.go: kube-apiserver's own evaluator for webhook match conditions) from the
# Go module proxy into the cache outside the checkout, once per source; prints the binary's path
# on the last stdout line. Needs the Go toolchain the control plane's build.sh uses.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${WFE_CACHE_DIR:-$HOME/.cache/wfe-admission}"
key="$(cat "$here/go.mod" "$here/go.sum" "$here/main.go" | sha256sum | cut -c1-16)"
out="$cache/celcost-$key/celcost"
if [[ -x "$out" ]]; then
  printf '%s\n' "$out"
  exit 0
fi
mkdir -p "$(dirname "$out")"
export GOTOOLCHAIN=local GOWORK=off GOFLAGS="-buildvcs=false"
echo "celcost/build.sh: building $out" >&2
(cd "$here" && go build -trimpath -o "$out.tmp" .) >&2
mv "$out.tmp" "$out"
printf '%s\n' "$out"
