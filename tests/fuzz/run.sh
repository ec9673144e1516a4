#!/usr/bin/env bash
# Runs every cargo-fuzz target of tests/fuzz for a bounded time over the checked-in corpus.
# Targets: `review` (AdmissionReview bytes through both parsers and both endpoints) and
# `combine` (JSON old/new statuses, writer and clock through the combine step).
#
#   tests/fuzz/run.sh [seconds-per-target]     (default 60)
#
# Fails on any crash, panic, timeout (an input slower than 10 s) or out-of-memory, leaving the
# input under $WORK/artifacts/<target>/ and printing how to replay it. New inputs the fuzzer
# finds go to $WORK/corpus/<target>/, never into the checked-in seeds. Prints the number of
# executions per target. Needs a nightly toolchain; installs cargo-fuzz into
# ${WFE_CACHE_DIR:-$HOME/.cache/wfe-admission}/tools when it is missing.
set -euo pipefail

seconds="${1:-60}"
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cache="${WFE_CACHE_DIR:-$HOME/.cache/wfe-admission}"
tools="$cache/tools"
work="${WFE_FUZZ_WORK:-$cache/fuzz}"
# Fuzz builds are nightly + sanitizer builds: keep them apart from the main artefacts.
target_dir="${CARGO_TARGET_DIR:-$root/target}/fuzz"
export PATH="$tools/bin:$PATH"

if ! rustup toolchain list | grep -q '^nightly'; then
  echo "run.sh: a nightly toolchain is needed (rustup toolchain install nightly)" >&2
  exit 1
fi
if ! command -v cargo-fuzz >/dev/null; then
  echo "== installing cargo-fuzz into $tools"
  cargo install --locked --root "$tools" cargo-fuzz --version 0.13.2
fi

cd "$root"
targets=(review combine)
fuzz=(cargo +nightly fuzz)
# The crate forbids unsafe code: what the targets look for is panics, hangs and broken
# invariants, not memory errors, so no sanitizer by default (faster to build and to run);
# WFE_FUZZ_SANITIZER=address for an AddressSanitizer run.
common=(--fuzz-dir tests/fuzz --target-dir "$target_dir" --sanitizer "${WFE_FUZZ_SANITIZER:-none}")

echo "== building fuzz targets (${targets[*]})"
"${fuzz[@]}" build "${common[@]}"

# libFuzzer adds every input that finds something new to the work corpus and never prunes it,
# so after enough runs a run spent most of its time replaying the corpus (61 000 files loaded in
# about 37 of 60 s). Past this many files it is merged down (-merge=1) to the inputs that still
# add coverage (about 6 000 then), so the time goes to fuzzing again.
corpus_max="${WFE_FUZZ_CORPUS_MAX:-15000}"
limits=(-timeout=10 -rss_limit_mb=2048 -max_len=262144)

status=0
for t in "${targets[@]}"; do
  mkdir -p "$work/corpus/$t" "$work/artifacts/$t"
  log="$work/$t.log"
  files="$(find "$work/corpus/$t" -type f | wc -l)"
  if [ "$files" -gt "$corpus_max" ]; then
    merged="$work/corpus/$t.merged"
    rm -rf "$merged" && mkdir -p "$merged"
    echo "== merging the $t work corpus ($files files, over $corpus_max)"
    if "${fuzz[@]}" run "${common[@]}" "$t" "$merged" "$work/corpus/$t" -- \
      -merge=1 "${limits[@]}" >"$work/$t.merge.log" 2>&1; then
      rm -rf "$work/corpus/$t" && mv "$merged" "$work/corpus/$t"
      echo "   kept $(find "$work/corpus/$t" -type f | wc -l) files"
    else
      # A failed merge loses nothing: the corpus stays as it was.
      rm -rf "$merged"
      echo "   merge failed (kept the corpus as it was); last lines of $work/$t.merge.log:"
      tail -n 5 "$work/$t.merge.log"
    fi
  fi
  echo "== fuzzing $t for ${seconds}s"
  # The review target also starts from the reviews the tests use (tests/data), kept there only.
  seeds=("tests/fuzz/corpus/$t")
  [ "$t" = review ] && seeds+=("tests/data")
  set +e
  "${fuzz[@]}" run "${common[@]}" "$t" "$work/corpus/$t" "${seeds[@]}" -- \
    -max_total_time="$seconds" "${limits[@]}" \
    -dict=tests/fuzz/dict/admission.dict -print_final_stats=1 \
    -artifact_prefix="$work/artifacts/$t/" >"$log" 2>&1
  rc=$?
  set -e
  runs="$(grep -Eo 'Done [0-9]+ runs' "$log" | grep -Eo '[0-9]+' | tail -1 || true)"
  cov="$(grep -Eo 'cov: [0-9]+' "$log" | tail -1 || true)"
  corpus="$(find "$work/corpus/$t" "${seeds[@]}" -type f | wc -l)"
  if [ "$rc" -ne 0 ]; then
    status=1
    echo "FAILED: fuzz target $t (exit $rc); last lines of $log:"
    tail -n 40 "$log"
    for a in "$work/artifacts/$t"/*; do
      [ -e "$a" ] || continue
      echo "  replay: cargo +nightly fuzz run --fuzz-dir tests/fuzz $t $a"
    done
  else
    echo "fuzz $t: ${runs:-?} executions in ${seconds}s, ${cov:-cov: ?} edges, corpus $corpus inputs, no crash"
  fi
done
exit "$status"
