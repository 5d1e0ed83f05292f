#!/bin/sh
# Runs the Python client's tests (clients/python/tests) against a real
# `levain serve` that the tests start themselves, from the project's venv
# (Tools/python-venv.sh: httpx2, pytest pinned). The client is imported from
# the source tree; one test also installs it with pip.
#
# Usage: LEVAIN_BIN=.build/debug/levain Tools/python-client-tests.sh [PYTEST ARGS...]
set -eu
cd "$(dirname "$0")/.."
VENV="$(Tools/python-venv.sh | tail -n 1)"
export LEVAIN_BIN="${LEVAIN_BIN:-$PWD/.build/debug/levain}"
PYTHONPATH="$PWD/clients/python/src" exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider clients/python/tests "$@"
