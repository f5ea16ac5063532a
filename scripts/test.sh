#!/usr/bin/env bash
# The whole test suite. Builds the server and every plugin .so first (cargo test alone does not
# produce cdylib files), then runs unit, integration and doc tests.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --all-targets
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --all-targets --no-fail-fast
fi
cargo test --workspace --doc
