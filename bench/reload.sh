#!/usr/bin/env bash
# Reload latency and memory per plugin swap (issue #3). Builds release binaries, then runs the
# benchmark in tests/benches/reload.rs against the real server.
#   CHANGES=100 SWAPS=50 bench/reload.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace
cargo bench -p portcullis-tests --bench reload
