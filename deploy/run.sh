#!/usr/bin/env bash
# The main job on a fresh machine: virtualenv, install, then the full local demo
# (embedded Postgres + Kafka broker, migrations, seeds, projector, query service, demo fleet,
# the answer to a sample GPU request). Extra arguments go to `hwledger demo` (e.g. --once).
set -euo pipefail
cd "$(dirname "$0")/.."
. deploy/venv.sh
exec "$VENV/bin/hwledger" demo "$@"
