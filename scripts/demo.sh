#!/usr/bin/env bash
# The main job: build, start the mock provider and the three services as processes,
# push 10,000 requests through the real RabbitMQ, wait for their delivery reports and
# print a summary. Extra arguments go to `sendfleet-bench demo` (e.g. --messages 50000).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --bins --quiet
exec target/release/sendfleet-bench demo "$@"
