#!/usr/bin/env bash
# One command for issue 9's benchmarks: creates/updates .venv with the `bench` extra
# (ipyparallel, matplotlib, numpy, py-spy) through setup.sh, then runs every system.
# Arguments go to benchmarks.run, e.g. `bash benchmarks/run.sh --quick`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash setup.sh mpich,bench
exec .venv/bin/python -m benchmarks.run "$@"
