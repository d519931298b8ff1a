#!/usr/bin/env bash
# Sets up the venv, then runs the end-to-end test that drives producer.py against the real
# RabbitMQ and the in-process fleet (crates/sendfleet-e2e/tests/it/python.rs).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$here/setup.sh"
cd "$here/../.."
exec cargo test -p sendfleet-e2e --test it python -- --nocapture
