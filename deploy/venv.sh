# Sourced by run.sh and test.sh: a virtualenv with hwledger and its dev extra installed.
VENV=${HWLEDGER_VENV:-.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -e ".[dev]"
