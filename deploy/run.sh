#!/usr/bin/env bash
# The main job on a fresh machine: virtualenv, install, then the full local demo
# (embedded Postgres + Kafka broker, migrations, seeds, projector, query service, demo fleet,
# the answer to a sample GPU request). Extra arguments go to `hwledger demo` (e.g. --once).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${HWLEDGER_VENV:-.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -e ".[dev]"
exec "$VENV/bin/hwledger" demo "$@"
