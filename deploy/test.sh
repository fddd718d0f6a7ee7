#!/usr/bin/env bash
# The whole test suite on a fresh machine: virtualenv, install, pytest (unit + integration).
# Integration tests use HWLEDGER_TEST_DATABASE_URL / HWLEDGER_TEST_KAFKA_BOOTSTRAP when set,
# otherwise they start the embedded PostgreSQL and Kafka-protocol broker themselves.
set -euo pipefail
cd "$(dirname "$0")/.."
. deploy/venv.sh
set +e
"$VENV/bin/python" -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: treating that as a failure" >&2
  exit 1
fi
exit "$status"
