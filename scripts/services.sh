#!/usr/bin/env bash
# Starts RabbitMQ and Redis on their default local ports when they are not running,
# and waits until both answer. Idempotent.
set -euo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if ! port_open 6379; then
  echo "starting redis-server on 127.0.0.1:6379"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
fi
if ! port_open 5672; then
  echo "starting rabbitmq-server (detached)"
  rabbitmq-server -detached >/dev/null 2>&1 || true
fi
for _ in $(seq 1 120); do
  if port_open 5672 && port_open 6379; then
    exit 0
  fi
  sleep 1
done
echo "RabbitMQ (5672) or Redis (6379) did not come up within 120 s." >&2
echo "Start them by hand: rabbitmq-server -detached; redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save \"\" --appendonly no" >&2
exit 1
