#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit + integration tests against the real
# RabbitMQ and Redis, the Python example producer, and static checks of the deployment
# files. Needs RabbitMQ and Redis on their default local ports (scripts/services.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== tests (cargo nextest)"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi
cargo test --workspace --doc --locked

echo "== Python example producer against the real broker"
bash examples/python/run.sh

echo "== static checks of docker-compose.yml and deploy/"
python3 scripts/check_deploy.py

echo "all checks passed"
