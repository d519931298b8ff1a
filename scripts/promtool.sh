#!/usr/bin/env bash
# Checks the Prometheus config and alert rules with promtool and runs the rules' unit
# tests (deploy/prometheus/alerts.test.yml). Uses `promtool` from PATH; without one it
# extracts the binary from Debian's `prometheus` package into target/tools/ (apt-get
# download + dpkg-deb: installing the package would also start a prometheus service).
set -euo pipefail
cd "$(dirname "$0")/.."

promtool="$(command -v promtool || true)"
if [ -z "$promtool" ]; then
  promtool="target/tools/promtool"
  if [ ! -x "$promtool" ]; then
    echo "   promtool not on PATH: extracting it from Debian's prometheus package"
    download="$(mktemp -d)"
    trap 'rm -rf "$download"' EXIT
    # apt fetches as its unprivileged _apt user, which must be able to write here.
    chmod 777 "$download"
    if ! (cd "$download" && apt-get download -qq prometheus 2>/dev/null); then
      apt-get update -qq
      (cd "$download" && apt-get download -qq prometheus)
    fi
    mkdir -p "$(dirname "$promtool")"
    dpkg-deb --fsys-tarfile "$download"/prometheus_*.deb | tar -xO ./usr/bin/promtool >"$promtool.part"
    chmod +x "$promtool.part"
    mv "$promtool.part" "$promtool"
  fi
fi

"$promtool" --version | head -n 1
# --syntax-only: the rule file path in it (/etc/prometheus/alerts.yml) exists only in the container.
"$promtool" check config --syntax-only deploy/prometheus/prometheus.yml
"$promtool" check rules deploy/prometheus/alerts.yml
"$promtool" test rules deploy/prometheus/alerts.test.yml
