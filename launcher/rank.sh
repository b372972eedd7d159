#!/usr/bin/env bash
# Runs one MPI rank and records how it ended, so that the hub can tell the user
# "rank 3 was killed by SIGSEGV" even when the rank could not say so itself.
# usage: rank.sh JOB_DIR COMMAND...      (started once per rank by mpiexec or srun)
# With node agents (HPCKERNEL_FANIN=agents, HubKernel.fanin), the first rank of each node
# also starts the node's agent (COMMAND's Python, -m hpckernel.agent) and waits for it.
# The exit file names the launch (HPCKERNEL_LAUNCH, set by the hub), so that a rank of an
# earlier launch that ends late is not taken for the new rank of its number.
if [ "${1:-}" = --agent ]; then
    # rank.sh --agent JOB_DIR NODE PYTHON: the node's agent, started again if something
    # kills it while the ranks run: it binds the same socket, the node's ranks reconnect
    # and register again, and the hub sends it what is open on them. It ends on its own
    # (the hub's shutdown, or the hub gone); it dies with this shell (PR_SET_PDEATHSIG, and
    # HPCKERNEL_PARENT_PID if this shell died before the agent could ask).
    for attempt in 1 2 3 4 5; do
        HPCKERNEL_PARENT_PID=$$ "$4" -m hpckernel.agent "$2" "$3"
        rc=$?
        [ "$rc" -gt 128 ] || exit "$rc"
        echo "hpckernel: the agent of node $3 was killed (signal $((rc - 128))); starting it again" >&2
    done
    exit "$rc"
fi
job_dir=$1
shift
# The rank as the starter tells it: Open MPI's mpirun (OMPI_COMM_WORLD_RANK; under it, the
# SLURM_* variables are those of its daemon's step), MPICH's mpiexec (PMI_RANK), srun.
rank=${OMPI_COMM_WORLD_RANK:-${PMI_RANK:-${PMIX_RANK:-${SLURM_PROCID:-unknown}}}}
# Open MPI's launcher gives each rank a process group of its own, and when it dies (the hub
# SIGKILLed, even its SIGTERM seen to leave them at times) nothing else ends them: tie this
# shell to it, and the rank and the agent to this shell.
tie=()
if [ -n "${OMPI_COMM_WORLD_RANK:-}" ] && command -v setpriv >/dev/null; then
    if [ -z "${HPCKERNEL_TIED:-}" ]; then
        export HPCKERNEL_TIED=1
        exec setpriv --pdeathsig KILL -- bash "$0" "$job_dir" "$@"
    fi
    tie=(setpriv --pdeathsig KILL --)
fi
launch=${HPCKERNEL_LAUNCH:-0}
agent=
if [ "${HPCKERNEL_FANIN:-}" = agents ]; then
    if [ -n "${HPCKERNEL_NODES:-}" ]; then
        # Pretend the ranks are on K nodes (a local test of agents): blocks of ranks.
        size=${OMPI_COMM_WORLD_SIZE:-${PMI_SIZE:-${SLURM_NTASKS:-1}}}
        node=$(( rank * HPCKERNEL_NODES / size ))
        first=$(( (node * size + HPCKERNEL_NODES - 1) / HPCKERNEL_NODES ))
        local_id=$(( rank - first ))
    elif [ -n "${OMPI_COMM_WORLD_LOCAL_RANK:-${MPI_LOCALRANKID:-}}" ] \
            && [ -n "${SLURMD_NODENAME:-}" ]; then
        # The MPI's own mpirun in an allocation (Open MPI's, MPICH's): the SLURM_* variables
        # are those of its daemons' steps, whose local ids are all 0.
        node=$SLURMD_NODENAME
        local_id=${OMPI_COMM_WORLD_LOCAL_RANK:-$MPI_LOCALRANKID}
    elif [ -n "${SLURM_NODEID:-}" ]; then
        # Slurm's node index, not the host name: several slurmd may share a host.
        node=$SLURM_NODEID
        local_id=${SLURM_LOCALID:-0}
    else
        node=$(hostname)
        local_id=${OMPI_COMM_WORLD_LOCAL_RANK:-${MPI_LOCALRANKID:-0}}
    fi
    export HPCKERNEL_NODE=$node
    if [ "$local_id" = 0 ]; then
        "${tie[@]}" bash "$0" --agent "$job_dir" "$node" "$1" &
        agent=$!
    fi
fi
# SIGTERM to the ranks' process group (the hub stopping them; USR2 through srun, which
# answers TERM with SIGKILL) ends the rank; this shell outlives it to record how it ended (a
# trap, unlike an ignored signal, is not inherited).
trap ':' TERM USR2
# The rank's PR_SET_PDEATHSIG comes once Python has started; if this shell is gone by then,
# HPCKERNEL_PARENT_PID tells it so (hpckernel/deathsig.py).
HPCKERNEL_PARENT_PID=$$ "${tie[@]}" "$@"
rc=$?
printf '%s\n' "$rc" > "$job_dir/exit.$launch.$rank.tmp" && mv "$job_dir/exit.$launch.$rank.tmp" "$job_dir/exit.$launch.$rank"
if [ -n "$agent" ]; then
    wait "$agent"  # the node's other ranks still need it; it leaves on the hub's shutdown
fi
exit "$rc"
