#!/usr/bin/env bash
# Runs one MPI rank and records how it ended, so that the hub can tell the user
# "rank 3 was killed by SIGSEGV" even when the rank could not say so itself.
# usage: rank.sh JOB_DIR COMMAND...      (started once per rank by mpiexec or srun)
# With node agents (HPCKERNEL_FANIN=agents, HubKernel.fanin), the first rank of each node
# also starts the node's agent (COMMAND's Python, -m hpckernel.agent) and waits for it.
# The exit file names the launch (HPCKERNEL_LAUNCH, set by the hub), so that a rank of an
# earlier launch that ends late is not taken for the new rank of its number.
job_dir=$1
shift
rank=${PMI_RANK:-${SLURM_PROCID:-unknown}}
launch=${HPCKERNEL_LAUNCH:-0}
agent=
if [ "${HPCKERNEL_FANIN:-}" = agents ]; then
    if [ -n "${HPCKERNEL_NODES:-}" ]; then
        # Pretend the ranks are on K nodes (a local test of agents): blocks of ranks.
        size=${PMI_SIZE:-${SLURM_NTASKS:-1}}
        node=$(( rank * HPCKERNEL_NODES / size ))
        first=$(( (node * size + HPCKERNEL_NODES - 1) / HPCKERNEL_NODES ))
        local_id=$(( rank - first ))
    elif [ -n "${SLURM_NODEID:-}" ]; then
        # Slurm's node index, not the host name: several slurmd may share a host.
        node=$SLURM_NODEID
        local_id=${SLURM_LOCALID:-0}
    else
        node=$(hostname)
        local_id=${MPI_LOCALRANKID:-0}
    fi
    export HPCKERNEL_NODE=$node
    if [ "$local_id" = 0 ]; then
        # The agent is started again if something kills it while the ranks run: it binds
        # the same socket, the node's ranks reconnect and register again, and the hub sends
        # it what is open on them. It ends on its own (the hub's shutdown, or the hub gone).
        (
            for attempt in 1 2 3 4 5; do
                "$1" -m hpckernel.agent "$job_dir" "$node"
                rc=$?
                [ "$rc" -gt 128 ] || exit "$rc"
                echo "hpckernel: the agent of node $node was killed (signal $((rc - 128))); starting it again" >&2
            done
        ) &
        agent=$!
    fi
fi
# SIGTERM to the ranks' process group (the hub stopping them; USR2 through srun, which
# answers TERM with SIGKILL) ends the rank; this shell outlives it to record how it ended (a
# trap, unlike an ignored signal, is not inherited).
trap ':' TERM USR2
"$@"
rc=$?
printf '%s\n' "$rc" > "$job_dir/exit.$launch.$rank.tmp" && mv "$job_dir/exit.$launch.$rank.tmp" "$job_dir/exit.$launch.$rank"
if [ -n "$agent" ]; then
    wait "$agent"  # the node's other ranks still need it; it leaves on the hub's shutdown
fi
exit "$rc"
