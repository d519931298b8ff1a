#!/usr/bin/env bash
# Contract test of the dispatcher's HTTP API: runs the debug dispatcher binary against the
# real broker (127.0.0.1:5672) and Redis on a throw-away prefix, with the numbering-plan
# check on and a bearer token, and lets schemathesis (scripts/requirements-contract.txt,
# in a venv under target/) call every operation of the served /openapi.json: no answer may
# be a 5xx and every answer must be one the document lists, with a body of its schema.
# Cleans up its queues, Redis keys and process on exit. Bounded: a few examples per
# operation, well under two minutes. CONTRACT_MAX_EXAMPLES and CONTRACT_SEED (defaults 25
# and 1) widen or vary a run by hand.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/contract-venv
if ! "$venv/bin/python" -c 'import schemathesis' 2>/dev/null \
   || ! cmp -s scripts/requirements-contract.txt "$venv/requirements-contract.txt"; then
  python3 -m venv "$venv" || { echo "python3 -m venv failed: install python3-venv" >&2; exit 1; }
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r scripts/requirements-contract.txt
  cp scripts/requirements-contract.txt "$venv/requirements-contract.txt"
fi

cargo build --locked -q -p sendfleet-dispatcher --bin dispatcher
cargo build --locked -q -p sendfleet-contract --example delete_namespace

work="$(mktemp -d)"
prefix="sfc-$(date +%s)-$$"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
# Providers point at a port nothing listens on: send tests get a fast transient answer.
cat > "$work/sendfleet.toml" <<TOML
[broker]
url = "amqp://guest:guest@127.0.0.1:5672/%2f"
prefix = "$prefix"

[redis]
url = "redis://127.0.0.1:6379"
key_prefix = "$prefix"

[dispatcher]
listen = "127.0.0.1:$port"
api_token_env = "SFC_API_TOKEN"
check_numbering_plan = true

[[templates]]
id = "order-shipped"
content = { type = "text", text = "Hi {{name}}, order {{order}} has shipped." }

[[providers]]
id = "ib-sms"
kind = "infobip_sms"
base_url = "http://127.0.0.1:9"
api_key_env = "SFC_API_KEY"
sender_ids = ["ACME"]
default_for_channel = true

[[providers]]
id = "ib-rcs"
kind = "infobip_rcs"
base_url = "http://127.0.0.1:9"
api_key_env = "SFC_API_KEY"
sender_ids = ["AcmeAgent"]
default_for_channel = true
TOML

export SFC_API_TOKEN="contract-token-$(date +%s%N)"
export SFC_API_KEY="contract-key"
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  target/debug/examples/delete_namespace "$work/sendfleet.toml" || echo "clean-up of $prefix failed" >&2
  rm -rf "$work"
}
trap cleanup EXIT

target/debug/dispatcher --config "$work/sendfleet.toml" > "$work/dispatcher.log" 2>&1 &
pid=$!
base="http://127.0.0.1:$port"
# GET with Python rather than curl, which a fresh Debian machine may lack.
fetch() { "$venv/bin/python" -c 'import sys, urllib.request; sys.stdout.buffer.write(urllib.request.urlopen(sys.argv[1], timeout=5).read())' "$1"; }
for _ in $(seq 1 100); do
  if fetch "$base/health" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$pid" 2>/dev/null; then cat "$work/dispatcher.log" >&2; exit 1; fi
  sleep 0.2
done
fetch "$base/health" >/dev/null || { echo "dispatcher not ready" >&2; cat "$work/dispatcher.log" >&2; exit 1; }
# The served document is the committed one (the Rust test compares the generator with it).
fetch "$base/openapi.json" | cmp -s - docs/openapi.json \
  || { echo "GET /openapi.json differs from docs/openapi.json" >&2; exit 1; }

status=0
# Run from the temp dir: schemathesis keeps a .schemathesis/ cache in its working directory.
schemathesis="$PWD/$venv/bin/schemathesis"
(cd "$work" && timeout 150 "$schemathesis" --no-color run "$base/openapi.json" \
  --header "Authorization: Bearer $SFC_API_TOKEN" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance,negative_data_rejection,ignored_auth,unsupported_method \
  --max-examples "${CONTRACT_MAX_EXAMPLES:-25}" \
  --phases examples,coverage,fuzzing \
  --seed "${CONTRACT_SEED:-1}") || status=$?
if [ "$status" -ne 0 ]; then
  echo "== dispatcher log (last 40 lines)" >&2
  tail -40 "$work/dispatcher.log" >&2
fi
exit "$status"
