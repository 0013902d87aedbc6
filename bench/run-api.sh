#!/usr/bin/env bash
# The foundation benchmarks recorded in bench/RESULTS.md. Needs PostgreSQL on 127.0.0.1:5432 for the postgres rows.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${SECS:-10}
cargo xtask bench-api send --backend sqlite   --concurrency 1,50,500 --seconds "$secs"
cargo xtask bench-api send --backend sqlite   --concurrency 500 --seconds "$secs" --interval-ms 2000
cargo xtask bench-api send --backend postgres --concurrency 1,50,500 --seconds "$secs"
cargo xtask bench-api send --backend postgres --concurrency 500 --seconds "$secs" --interval-ms 2000
cargo xtask bench-api ws-idle --connections 10000
