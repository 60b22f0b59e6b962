#!/usr/bin/env bash
# The one release build: the Dockerfile runs it, and so does CI (which has no Docker
# engine) before checking the binary it produces. Same lockfile, target and profile.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p shipshape --bin shipshape
echo "${CARGO_TARGET_DIR:-target}/release/shipshape"
