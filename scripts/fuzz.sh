#!/usr/bin/env bash
# Fuzzes config parsing+compilation, path canonicalization+matching and token verification with
# cargo-fuzz (libFuzzer), each for a bounded time. Not part of the test suite (it needs nightly).
#
#   scripts/fuzz.sh            # every target, FUZZ_SECONDS (default 180) each
#   scripts/fuzz.sh paths 60   # one target, 60 s
#
# Installs cargo-fuzz and the nightly toolchain when missing. Builds under target/fuzz. A crash
# leaves its input in fuzz/artifacts/<target>/; turn it into a regression test before fixing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! rustup toolchain list | grep -q '^nightly'; then
  rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
targets=(config paths tokens)
if [ $# -ge 1 ]; then targets=("$1"); fi
seconds="${2:-${FUZZ_SECONDS:-180}}"
jobs="${FUZZ_JOBS:-1}"
mkdir -p fuzz/corpus
status=0
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  # Seeds: checked-in examples, so the fuzzer starts from realistic inputs.
  if [ -d "fuzz/seeds/$t" ]; then cp -n fuzz/seeds/"$t"/* "fuzz/corpus/$t/" 2>/dev/null || true; fi
  echo "== $t: ${seconds}s"
  if ! (cd fuzz && cargo +nightly fuzz run --target-dir ../target/fuzz "$t" "corpus/$t" -- \
        -max_total_time="$seconds" -jobs="$jobs" -workers="$jobs" -max_len=65536 \
        -print_final_stats=1 2>&1 | tee "../target/fuzz-$t.log" | grep -E '^(#[0-9]+ +DONE|stat::|==|SUMMARY|Done)' ); then
    status=1
  fi
  if grep -qE 'ERROR: libFuzzer|panicked|SUMMARY: .*Sanitizer' "target/fuzz-$t.log"; then
    echo "!! $t found a crash: see fuzz/artifacts/$t/ and target/fuzz-$t.log"
    status=1
  fi
done
exit $status
