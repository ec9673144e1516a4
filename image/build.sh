#!/usr/bin/env bash
# Builds the wfe-admission container image without a Docker engine: a release binary with
# glibc linked statically, then image/Dockerfile (FROM scratch) built by buildah into an OCI
# archive that `skopeo copy` or `crane push` can publish.
#
# Output, in ${WFE_IMAGE_OUT:-<repo>/target/image}:
#   context/wfe-admission            the binary, the Dockerfile's whole build context
#   wfe-admission-<version>.oci.tar  the image, its OCI ref name the version
# The static build has its own cargo target directory (its RUSTFLAGS differ from a normal
# build's): ${WFE_CACHE_DIR:-$HOME/.cache/wfe-admission}/target-image, reused by later runs.
#
# buildah comes from Debian's package, installed when missing and running as root;
# cargo-auditable from crates.io, into ${WFE_CACHE_DIR:-$HOME/.cache/wfe-admission}/tools.
# Logs go to stderr; the last stdout line is the archive's path.
#
# Usage: image/build.sh
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
CACHE_ROOT="${WFE_CACHE_DIR:-$HOME/.cache/wfe-admission}"
OUT="${WFE_IMAGE_OUT:-$repo/target/image}"
TARGET=x86_64-unknown-linux-gnu

log() { printf 'image/build.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ "$(uname -m)" == x86_64 ]] || die "only x86_64 images are built here (uname -m: $(uname -m))"
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$repo/Cargo.toml" | head -n1)"
[[ -n "$version" ]] || die "no package version in $repo/Cargo.toml"
revision="$(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)"
# The image's creation time is the commit's, so that rebuilding a commit gives the same config.
created="${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct 2>/dev/null || echo 0)}"

mkdir -p "$CACHE_ROOT" "$OUT"
# Serialise concurrent builders: they share the target directory and buildah's store.
exec 9>"$CACHE_ROOT/.image-build.lock"
flock 9

# cargo auditable embeds the binary's dependency list (section .dep-v0), which image scanners
# (Trivy, Grype, Syft) read to report vulnerable crates in the image.
AUDITABLE_VERSION=0.7.7
export PATH="$CACHE_ROOT/tools/bin:$PATH"
if ! cargo install --list --root "$CACHE_ROOT/tools" | grep -qx "cargo-auditable v$AUDITABLE_VERSION:"; then
  log "installing cargo-auditable $AUDITABLE_VERSION from crates.io"
  cargo install --locked --quiet --root "$CACHE_ROOT/tools" cargo-auditable --version "$AUDITABLE_VERSION" >&2
fi

log "building the static release binary (cold: several minutes on 2 cores)"
# --target keeps RUSTFLAGS off build scripts and proc macros, which cannot be static.
(
  cd "$repo"
  # Run from a test, cargo's per-crate variables are set, and ring's build script reruns when
  # CARGO_MANIFEST_DIR changes: without them, a test and a person share one cached build.
  while read -r var; do unset "$var"; done < <(compgen -e | grep -E '^CARGO_(MANIFEST_|PKG_|CRATE_|BIN_|PRIMARY_|TARGET_TMPDIR)' || true)
  # Symbol names stay for backtraces; line tables (52 of the 71 MB) do not.
  CARGO_TARGET_DIR="$CACHE_ROOT/target-image" RUSTFLAGS="-C target-feature=+crt-static" \
    CARGO_PROFILE_RELEASE_DEBUG=none CARGO_PROFILE_RELEASE_STRIP=debuginfo \
    cargo auditable build --release --locked --target "$TARGET" --bin wfe-admission >&2
)
bin="$CACHE_ROOT/target-image/$TARGET/release/wfe-admission"
# A scratch image has no dynamic loader: refuse a binary that would need one.
if readelf --program-headers "$bin" | grep -q 'program interpreter'; then
  die "$bin is dynamically linked"
fi
readelf --section-headers "$bin" | grep -q '\.dep-v0' || die "$bin carries no dependency list"

context="$OUT/context"
rm -rf "$context"
mkdir -p "$context"
cp "$bin" "$context/wfe-admission"

if ! command -v buildah >/dev/null 2>&1; then
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    log "installing buildah from Debian's packages"
    # A fresh machine may have no package lists yet.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q buildah >&2 ||
      { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q buildah >&2; } ||
      die "apt-get install buildah failed"
  else
    die "buildah is not installed (Debian: apt-get install buildah); with Docker instead: docker build -f image/Dockerfile $context"
  fi
fi

# A private store under the cache: no daemon, nothing of the machine's own images touched.
store=(--root "$CACHE_ROOT/buildah/root" --runroot "$CACHE_ROOT/buildah/run" --storage-driver vfs)
tag="localhost/wfe-admission:$version"
archive="$OUT/wfe-admission-$version.oci.tar"
log "buildah bud image/Dockerfile -> $archive"
buildah "${store[@]}" bud --quiet --isolation chroot --timestamp "$created" \
  --identity-label=false --build-arg "VERSION=$version" --build-arg "REVISION=$revision" \
  -f "$repo/image/Dockerfile" -t "$tag" "$context" >&2
rm -f "$archive"
buildah "${store[@]}" push --quiet "$tag" "oci-archive:$archive:$version" >&2
buildah "${store[@]}" rmi --all >/dev/null 2>&1 || true
log "done: $archive ($(du -h "$archive" | cut -f1))"
printf '%s\n' "$archive"
