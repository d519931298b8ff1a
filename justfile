# Everyday recipes. `just --list` shows them. (just is optional: each recipe is one
# plain command you can run yourself.)

# The fleet end to end on the mock provider, with a summary.
demo *ARGS:
    bash scripts/demo.sh {{ARGS}}

# The whole test suite (fmt, clippy, tests against the real RabbitMQ/Redis, Python example, deploy checks).
test:
    bash scripts/test.sh

# Start RabbitMQ and Redis locally if they are not running.
services:
    bash scripts/services.sh

# A local three-node RabbitMQ cluster and Redis with Sentinels: start, status, env, stop,
# kill-rabbit N, restart-rabbit N, kill-redis-primary, restart-redis. See docs/SCALING.md.
cluster *ARGS:
    bash scripts/cluster.sh {{ARGS}}

# Lints only.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# The load harness (default scenarios); see docs/PERFORMANCE.md.
bench *ARGS:
    cargo build --release --locked --bins --quiet
    target/release/sendfleet-bench run {{ARGS}}

# The release fleet at the 4,600/s cap across kill -9 of the Redis primary (starts and
# stops the local Redis with Sentinels); exits 1 unless every check passes.
redis-failover *ARGS:
    cargo build --release --locked --bins --quiet
    target/release/sendfleet-bench redis-failover {{ARGS}}

# docker compose: the fleet with RabbitMQ UI, Prometheus and Grafana.
up:
    SENDFLEET_GIT_COMMIT="$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)" docker compose up -d --build

down:
    docker compose down

# Regenerate the mock provider's request schemas from Infobip's OpenAPI spec.
schemas:
    python3 tools/extract_infobip_schemas.py

# Static checks of docker-compose.yml, deploy/k8s, dashboard and alerts, and the alert rules' promtool tests.
deploy-check:
    python3 -m pip install --quiet -r scripts/requirements-deploy.txt
    python3 scripts/check_deploy.py
    bash scripts/promtool.sh
