#!/usr/bin/env bash
# Creates examples/python/.venv (if missing) and installs requirements.txt into it.
# Idempotent: re-running only re-checks the pinned packages. Prints one line on success.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
python="${PYTHON:-python3}"

if ! command -v "$python" >/dev/null 2>&1; then
    echo "setup.sh: $python not found; install Python 3.9+ (with the venv module)" >&2
    exit 1
fi
if [ ! -x "$venv/bin/python" ]; then
    if ! "$python" -m venv "$venv"; then
        rm -rf "$venv"
        echo "setup.sh: '$python -m venv' failed; install the venv module (e.g. apt-get install python3-venv)" >&2
        exit 1
    fi
fi
if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"; then
    echo "setup.sh: pip install failed (is PyPI reachable?)" >&2
    exit 1
fi
echo "python example ready: $venv ($("$venv/bin/python" --version 2>&1))"
