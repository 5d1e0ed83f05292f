#!/bin/sh
# Creates the Python virtual environment that the model-gateway tests use
# (the official openai and anthropic SDKs, requests, mcp) and the Python
# client's tests run in (its HTTP library httpx2, pytest, deepagents),
# idempotently.
#
# Usage: Tools/python-venv.sh [VENV_DIR]
#   VENV_DIR defaults to $LEVAIN_PYVENV, else /var/cache/levain/pyvenv.
# Prints the venv path as the last line of stdout on success.
#
# The venv is built on Debian's own /usr/bin/python3, never on a pyenv or
# other interpreter found on PATH: the tests bind the venv read-only into a
# jail that only has the host's /usr, so bin/python must resolve under /usr.
# Everything is made world-readable because the jail runs as an unprivileged
# mapped uid.
#
# A stamp file in the venv records the requirement list; when it matches and
# bin/python still resolves under /usr the script returns at once (no Python
# started). Delete the stamp (or the venv) to force a reinstall. What pip
# actually installed is recorded in VENV_DIR/levain-installed.txt.
set -eu

VENV="${1:-${LEVAIN_PYVENV:-/var/cache/levain/pyvenv}}"
PYTHON=/usr/bin/python3
# Not pinned strictly; what got installed is recorded after each install.
# The client package's own dependency range (clients/python/pyproject.toml),
# and pinned: the test runner and the frameworks its backends are tested
# through (deepagents, with langchain-openai for a chat model; openai-agents).
REQUIREMENTS="openai anthropic requests mcp httpx2>=2.16,<3 pytest==9.2.0 deepagents==0.7.32 langchain-openai==1.8.1 openai-agents==0.24.0"
STAMP="$VENV/.levain-venv-stamp"
STAMP_CONTENT="python=$PYTHON requirements=$REQUIREMENTS"

umask 022

# Fast path: complete and matching.
venv_ok() {
    [ -x "$VENV/bin/python" ] || return 1
    [ -f "$STAMP" ] || return 1
    [ "$(cat "$STAMP")" = "$STAMP_CONTENT" ] || return 1
    case "$(readlink -f "$VENV/bin/python")" in
        /usr/bin/python3*) return 0 ;;
        *) return 1 ;;
    esac
}
if venv_ok; then
    echo "$VENV"
    exit 0
fi

if [ ! -x "$PYTHON" ]; then
    echo "python-venv: $PYTHON is missing (run Tools/install-deps.sh)" >&2
    exit 1
fi

# Debian splits venv/ensurepip into python3-venv; install it only if missing.
if ! "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then
        echo "python-venv: Debian package python3-venv is missing; run as root (or: sudo apt-get install python3-venv)" >&2
        exit 1
    fi
    echo "python-venv: installing python3-venv" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null || apt-get update
    apt-get install -y -q --no-install-recommends python3-venv >/dev/null
fi

parent="$(dirname "$VENV")"
mkdir -p "$parent"
# Make the parents traversable by the jail's unprivileged uid (only those we
# own under /var/cache; never chmod / or /var/cache itself beyond a+rx).
d="$parent"
while [ "$d" != "/" ] && [ "$d" != "/var/cache" ] && [ "$d" != "/var" ]; do
    chmod a+rx "$d" 2>/dev/null || true
    d="$(dirname "$d")"
done

# Serialise concurrent runs (parallel test targets) on a lock beside the venv.
if command -v flock >/dev/null 2>&1 && [ -z "${LEVAIN_PYVENV_LOCKED:-}" ]; then
    export LEVAIN_PYVENV_LOCKED=1
    exec flock "$parent/.$(basename "$VENV").lock" sh "$0" "$VENV"
fi
# Someone else may have finished while we waited for the lock.
if venv_ok; then
    echo "$VENV"
    exit 0
fi

# A venv on the wrong interpreter (e.g. pyenv's) is rebuilt from scratch.
if [ -e "$VENV/bin/python" ]; then
    case "$(readlink -f "$VENV/bin/python")" in
        /usr/bin/python3*) ;;
        *) echo "python-venv: $VENV is not on $PYTHON; recreating" >&2
           rm -rf "$VENV" ;;
    esac
fi
rm -f "$STAMP"

if [ ! -x "$VENV/bin/python" ]; then
    echo "python-venv: creating $VENV on $PYTHON" >&2
    "$PYTHON" -m venv "$VENV"
fi

echo "python-venv: installing $REQUIREMENTS" >&2
# shellcheck disable=SC2086
"$VENV/bin/python" -m pip install --disable-pip-version-check -q --upgrade $REQUIREMENTS >&2

# Check the result before stamping it.
"$VENV/bin/python" -c 'import openai, anthropic, requests, mcp' >&2
case "$(readlink -f "$VENV/bin/python")" in
    /usr/bin/python3.*) ;;
    *) echo "python-venv: $VENV/bin/python does not resolve to /usr/bin/python3.x" >&2
       exit 1 ;;
esac

"$VENV/bin/python" -m pip freeze --disable-pip-version-check --all > "$VENV/levain-installed.txt"
chmod -R a+rX "$VENV"
printf '%s\n' "$STAMP_CONTENT" > "$STAMP.tmp"
chmod a+r "$STAMP.tmp"
mv -f "$STAMP.tmp" "$STAMP"
echo "$VENV"
