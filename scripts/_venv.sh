# Sourced by scripts/*: make sure .venv exists at the repo root and holds the
# project with the requested extras.  Reinstalls only when setup.cfg changed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
EXTRAS="${LEDGER_EXTRAS:-test}"
if [ ! -x "$VENV/bin/python" ]; then
    echo "creating $VENV" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip >&2
fi
STAMP="$VENV/.auditledger-$(echo "$EXTRAS" | tr ',' '-')"
WANT="$(cat "$ROOT/setup.cfg" "$ROOT/pyproject.toml" "$ROOT/setup.py" "$ROOT"/ledger/_native*.[ch] | sha256sum | cut -c1-16)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
    echo "installing auditledger[$EXTRAS] into $VENV" >&2
    "$VENV/bin/python" -m pip install -q -e "$ROOT[$EXTRAS]" >&2
    echo "$WANT" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
