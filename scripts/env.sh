#!/usr/bin/env bash
# Run a command inside the project virtual environment, creating or updating it first when
# requirements.txt changed since the last install (idempotent: a no-op check when up to date).
#   bash scripts/env.sh python train.py [overrides...]
#   bash scripts/env.sh python -m pytest
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="${PRISM_VENV:-$root/.venv}"
stamp="$venv/.requirements.sha256"
want=$(sha256sum "$root/requirements.txt" | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[env] installing requirements into $venv (first run takes a few minutes)" >&2
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  log="$venv/pip-install.log"
  if ! "$venv/bin/python" -m pip install -q -r "$root/requirements.txt" >"$log" 2>&1; then
    grep -v "^WARNING: Location" "$log" >&2; echo "[env] pip install failed (log: $log)" >&2; exit 1
  fi
  echo "$want" > "$stamp"
fi
cd "$root"
export PATH="$venv/bin:$PATH"
exec "$@"
