#!/usr/bin/env bash
# Create .venv with jobwire and its development tools, and make sure PostgreSQL and Redis run.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv" >&2
  if ! "$PYTHON" -m venv .venv 2>/dev/null; then
    rm -rf .venv
    # Debian splits venv's pip bootstrap into python3-venv; virtualenv from PyPI needs nothing
    "$PYTHON" -m pip install -q --user virtualenv
    "$PYTHON" -m virtualenv -q .venv
  fi
fi

# reinstall only when the dependencies changed
stamp=.venv/.jobwire-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing jobwire and its dependencies into .venv" >&2
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[dev]'
  echo "$want" > "$stamp"
fi

bash scripts/services.sh
