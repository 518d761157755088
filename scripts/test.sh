#!/usr/bin/env bash
# The whole test suite: starts the services it needs, builds the binary the
# integration tests drive, and runs every test. Missing services fail the
# run instead of being skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/services.sh
export LEADSIFT_TEST_REQUIRE_SERVICES=1
cargo build --locked -p leadsift --bins
cargo test --locked --workspace
