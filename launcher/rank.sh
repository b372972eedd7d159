#!/usr/bin/env bash
# Runs one MPI rank and records how it ended, so that the hub can tell the user
# "rank 3 was killed by SIGSEGV" even when the rank could not say so itself.
# usage: rank.sh JOB_DIR COMMAND...      (started once per rank by mpiexec or srun)
job_dir=$1
shift
"$@"
rc=$?
rank=${PMI_RANK:-${SLURM_PROCID:-unknown}}
printf '%s\n' "$rc" > "$job_dir/exit.$rank.tmp" && mv "$job_dir/exit.$rank.tmp" "$job_dir/exit.$rank"
exit "$rc"
