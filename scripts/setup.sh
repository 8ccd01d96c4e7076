#!/usr/bin/env bash
# Create .venv with jobwire and its development tools, and make sure PostgreSQL and Redis run.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv" >&2
  # Debian splits venv's pip bootstrap (ensurepip) into the python3-venv package: look before trying,
  # so that a first install does not show venv's "ensurepip is not available" error
  if ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing python3-venv (apt-get)" >&2
    SUDO=""; if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    minor=$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "python$minor-venv" >/dev/null \
      || $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
  fi
  if "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    "$PYTHON" -m venv .venv
  else
    # no venv support and no apt-get to add it: virtualenv brings its own
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
  # setuptools explains editable installs at length on every install; they are not the user's concern
  PYTHONWARNINGS=ignore .venv/bin/python -m pip install -q -e '.[dev]'
  echo "$want" > "$stamp"
fi

bash scripts/services.sh
