#!/usr/bin/env bash
# Runs one MPI rank and records how it ended, so that the hub can tell the user
# "rank 3 was killed by SIGSEGV" even when the rank could not say so itself.
# usage: rank.sh JOB_DIR COMMAND...      (started once per rank by mpiexec or srun)
job_dir=$1
shift
# SIGTERM to the ranks' process group (the hub stopping them; USR2 through srun, which
# answers TERM with SIGKILL) ends the rank; this shell outlives it to record how it ended and
# clean up (a trap, unlike an ignored signal, is not inherited).
trap ':' TERM USR2
"$@"
rc=$?
rank=${PMI_RANK:-${SLURM_PROCID:-unknown}}
# A rank that did not reach MPI_Finalize (killed, os._exit, MPI.Abort) leaves MPI's
# shared-memory files in /dev/shm: remove those it listed after MPI_Init (plane/segments.py).
# After a normal end they are gone already.
if [ -f "$job_dir/shm.$rank" ]; then
    while IFS= read -r segment; do
        case $segment in
            /dev/shm/*/* | *..*) ;;  # only plain names directly in /dev/shm
            /dev/shm/?*) rm -f -- "$segment" ;;
        esac
    done < "$job_dir/shm.$rank"
fi
printf '%s\n' "$rc" > "$job_dir/exit.$rank.tmp" && mv "$job_dir/exit.$rank.tmp" "$job_dir/exit.$rank"
exit "$rc"
