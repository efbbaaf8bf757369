#!/usr/bin/env bash
# The test suite again, in a fresh virtual environment with the newest versions pyproject.toml allows
# (no constraints.txt): what a user gets from `pip install braze` today. Fails when a release of a
# dependency changes a result, so that the pins in constraints.txt cannot hide it. Prints which versions
# differ from the pins. Usage: scripts/check_newest_deps.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
venv=$scratch/venv
python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q "torch==2.13.0"
"$venv/bin/python" -m pip install -q -e ".[test]"
"$venv/bin/python" - <<'PY'
import importlib.metadata as md
pins = dict(line.split("==") for line in open("constraints.txt").read().split() if "==" in line)
newer = [f"{name} {md.version(name)} (pinned {pin})" for name, pin in pins.items() if md.version(name) != pin]
print("newest allowed versions that differ from constraints.txt:", ", ".join(newer) or "none")
PY
"$venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
