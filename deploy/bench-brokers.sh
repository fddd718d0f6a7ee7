#!/usr/bin/env bash
# One benchmark on Apache Kafka and on Tansu, back to back on fresh local stacks, so their
# figures are measured in the same run: `bash deploy/bench-brokers.sh produce --events 20000`.
# Prints each broker's JSON line, prefixed with the broker's name.
set -euo pipefail
cd "$(dirname "$0")/.."
HWLEDGER=${HWLEDGER:-.venv/bin/hwledger}
for broker in kafka tansu; do
  home=$(mktemp -d)
  HWLEDGER_HOME=$home "$HWLEDGER" dev up --broker "$broker" --detach >/dev/null
  echo "== $broker" >&2
  status=0
  line=$(HWLEDGER_HOME=$home HWLEDGER_METRICS_PORT=0 "$HWLEDGER" bench "$@" | tail -1) || status=$?
  HWLEDGER_HOME=$home "$HWLEDGER" dev down >/dev/null
  rm -rf "$home"
  [ "$status" -eq 0 ] || { echo "bench $* failed on $broker (exit $status)" >&2; exit "$status"; }
  echo "$broker $line"
done
