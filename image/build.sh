#!/usr/bin/env bash
# Builds the wfe-admission container image for linux/amd64 and linux/arm64 without a Docker
# engine: a release binary per architecture with glibc linked statically, then
# image/Dockerfile (FROM scratch) built by buildah for each, pushed as one multi-platform OCI
# archive that `skopeo copy --all` or `crane push` can publish.
#
# Output, in ${WFE_IMAGE_OUT:-<repo>/target/image}:
#   context/<arch>/wfe-admission     the binaries, the Dockerfile's whole build context
#   wfe-admission-<version>.oci.tar  the image index, its OCI ref name the version
# The static builds have their own cargo target directory (their RUSTFLAGS differ from a
# normal build's): ${WFE_CACHE_DIR:-$HOME/.cache/wfe-admission}/target-image, reused later.
#
# WFE_IMAGE_ARCHES="amd64" (or "arm64") builds one platform only. On an x86_64 host, arm64
# needs the rustup target, Debian's aarch64 cross compiler and static glibc, and qemu-user to
# run the result once; buildah comes from Debian too. Each is installed when missing (Debian
# packages only as root); cargo-auditable comes from crates.io into
# ${WFE_CACHE_DIR:-$HOME/.cache/wfe-admission}/tools.
# Logs go to stderr; the last stdout line is the archive's path.
#
# Usage: image/build.sh
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
CACHE_ROOT="${WFE_CACHE_DIR:-$HOME/.cache/wfe-admission}"
OUT="${WFE_IMAGE_OUT:-$repo/target/image}"
read -r -a ARCHES <<<"${WFE_IMAGE_ARCHES:-amd64 arm64}"

log() { printf 'image/build.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ "$(uname -m)" == x86_64 ]] || die "the build runs on x86_64 hosts only (uname -m: $(uname -m))"
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$repo/Cargo.toml" | head -n1)"
[[ -n "$version" ]] || die "no package version in $repo/Cargo.toml"
revision="$(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)"
# The image's creation time is the commit's, so that rebuilding a commit gives the same config.
created="${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct 2>/dev/null || echo 0)}"

rust_target() {
  case "$1" in
    amd64) echo x86_64-unknown-linux-gnu ;;
    arm64) echo aarch64-unknown-linux-gnu ;;
    *) die "unknown architecture $1 (amd64, arm64)" ;;
  esac
}

# Debian packages, installed as root when a command they provide is missing.
need_packages() {
  local cmd="$1"
  shift
  command -v "$cmd" >/dev/null 2>&1 && return 0
  if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    die "$cmd is missing (Debian: apt-get install $*)"
  fi
  log "installing $* from Debian's packages"
  # A fresh machine may have no package lists yet.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2 ||
    { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2; } ||
    die "apt-get install $* failed"
}

mkdir -p "$CACHE_ROOT" "$OUT"
# Serialise concurrent builders: they share the target directory and buildah's store.
exec 9>"$CACHE_ROOT/.image-build.lock"
flock 9

targets=()
for arch in "${ARCHES[@]}"; do
  targets+=(--target "$(rust_target "$arch")")
  if [[ "$arch" == arm64 ]]; then
    need_packages aarch64-linux-gnu-gcc gcc-aarch64-linux-gnu libc6-dev-arm64-cross
    need_packages qemu-aarch64-static qemu-user-static
    if ! grep -qx aarch64-unknown-linux-gnu <<<"$(rustup target list --installed)"; then
      log "adding the rustup target aarch64-unknown-linux-gnu"
      rustup target add aarch64-unknown-linux-gnu >&2
    fi
  fi
done
need_packages buildah buildah

# cargo auditable embeds the binary's dependency list (section .dep-v0), which image scanners
# (Trivy, Grype, Syft) read to report vulnerable crates in the image.
AUDITABLE_VERSION=0.7.7
export PATH="$CACHE_ROOT/tools/bin:$PATH"
if ! grep -qx "cargo-auditable v$AUDITABLE_VERSION:" <<<"$(cargo install --list --root "$CACHE_ROOT/tools")"; then
  log "installing cargo-auditable $AUDITABLE_VERSION from crates.io"
  cargo install --locked --quiet --root "$CACHE_ROOT/tools" cargo-auditable --version "$AUDITABLE_VERSION" >&2
fi

log "building the static release binaries for ${ARCHES[*]} (cold: several minutes each on 2 cores)"
# --target keeps RUSTFLAGS off build scripts and proc macros, which cannot be static.
(
  cd "$repo"
  # Run from a test, cargo's per-crate variables are set, and ring's build script reruns when
  # CARGO_MANIFEST_DIR changes: without them, a test and a person share one cached build.
  while read -r var; do unset "$var"; done < <(compgen -e | grep -E '^CARGO_(MANIFEST_|PKG_|CRATE_|BIN_|PRIMARY_|TARGET_TMPDIR)' || true)
  export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
  export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
  # Symbol names stay for backtraces; line tables (52 of the 71 MB) do not.
  CARGO_TARGET_DIR="$CACHE_ROOT/target-image" RUSTFLAGS="-C target-feature=+crt-static" \
    CARGO_PROFILE_RELEASE_DEBUG=none CARGO_PROFILE_RELEASE_STRIP=debuginfo \
    cargo auditable build --release --locked "${targets[@]}" --bin wfe-admission >&2
)

context="$OUT/context"
rm -rf "$context"
for arch in "${ARCHES[@]}"; do
  bin="$CACHE_ROOT/target-image/$(rust_target "$arch")/release/wfe-admission"
  # Read whole before matching: `readelf | grep -q` under pipefail fails whenever grep exits
  # before readelf has written everything (SIGPIPE).
  headers="$(readelf --program-headers --section-headers "$bin")" || die "readelf cannot read $bin"
  # A scratch image has no dynamic loader: refuse a binary that would need one.
  if grep -q 'program interpreter' <<<"$headers"; then
    die "$bin is dynamically linked"
  fi
  grep -q '\.dep-v0' <<<"$headers" || die "$bin carries no dependency list"
  run=("$bin")
  [[ "$arch" == arm64 ]] && run=(qemu-aarch64-static "$bin")
  reported="$("${run[@]}" --version)" || die "$bin does not run"
  [[ "$reported" == "wfe-admission $version" ]] || die "$bin reports '$reported'"
  mkdir -p "$context/$arch"
  cp "$bin" "$context/$arch/wfe-admission"
done

# A private store under the cache: no daemon, nothing of the machine's own images touched.
store=(--root "$CACHE_ROOT/buildah/root" --runroot "$CACHE_ROOT/buildah/run" --storage-driver vfs)
list="localhost/wfe-admission:$version"
archive="$OUT/wfe-admission-$version.oci.tar"
buildah "${store[@]}" manifest rm "$list" >/dev/null 2>&1 || true
buildah "${store[@]}" rmi --all >/dev/null 2>&1 || true
buildah "${store[@]}" manifest create "$list" >/dev/null
for arch in "${ARCHES[@]}"; do
  log "buildah bud --platform linux/$arch image/Dockerfile"
  # FROM scratch and COPY only: no step runs foreign code, so no emulation is needed.
  buildah "${store[@]}" bud --quiet --isolation chroot --platform "linux/$arch" \
    --timestamp "$created" --identity-label=false \
    --build-arg "VERSION=$version" --build-arg "REVISION=$revision" \
    --manifest "$list" -f "$repo/image/Dockerfile" "$context" >&2
done
rm -f "$archive"
buildah "${store[@]}" manifest push --all --quiet "$list" "oci-archive:$archive:$version" >&2
buildah "${store[@]}" manifest rm "$list" >/dev/null 2>&1 || true
buildah "${store[@]}" rmi --all >/dev/null 2>&1 || true
log "done: $archive ($(du -h "$archive" | cut -f1), ${ARCHES[*]})"
printf '%s\n' "$archive"
