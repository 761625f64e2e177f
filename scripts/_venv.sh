# Sourced by scripts/* (and by an operator's shell): make sure .venv exists at
# the repo root and holds the project with the requested extras, then put it
# first on PATH.  Reinstalls only when setup.cfg or the C sources changed.
#
# It leaves the caller's shell options alone: the work runs in a subshell that
# stops at the first failure by itself (`|| exit 1`: errexit is ignored in a
# subshell whose status is tested), so an interactive shell that sources this
# file is not left with errexit on, where its next failing command would
# close it.  Only ROOT, VENV and PATH are set in the caller.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
if ! (
    set -u
    EXTRAS="${LEDGER_EXTRAS:-test}"
    if [ ! -x "$VENV/bin/python" ]; then
        echo "creating $VENV" >&2
        python3 -m venv "$VENV" || exit 1
        "$VENV/bin/python" -m pip install -q --upgrade pip >&2 || exit 1
    fi
    STAMP="$VENV/.auditledger-$(echo "$EXTRAS" | tr ',' '-')"
    WANT="$(set -o pipefail; cat "$ROOT/setup.cfg" "$ROOT/pyproject.toml" "$ROOT/setup.py" \
            "$ROOT"/ledger/_native*.[ch] | sha256sum | cut -c1-16)" || exit 1
    if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
        echo "installing auditledger[$EXTRAS] into $VENV" >&2
        "$VENV/bin/python" -m pip install -q -e "$ROOT[$EXTRAS]" >&2 || exit 1
        echo "$WANT" > "$STAMP" || exit 1
    fi
    # Byte-compile the project's own packages (an editable install does not).
    # Where PYTHONDONTWRITEBYTECODE is set, as in some containers and CI
    # images, nothing else writes their .pyc files, and every node process
    # would compile them again at start (docs/performance.md, "the suite's
    # time").  Unchanged files are skipped, so a second call costs little.
    "$VENV/bin/python" -m compileall -q -j 0 "$ROOT"/ledger "$ROOT"/consensus "$ROOT"/node \
        "$ROOT"/client "$ROOT"/monitor "$ROOT"/harness >/dev/null || exit 1
); then
    echo "scripts/_venv.sh: could not prepare $VENV (see above)" >&2
    return 1 2>/dev/null || exit 1
fi
export PATH="$VENV/bin:$PATH"
