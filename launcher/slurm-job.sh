#!/bin/bash
# Batch job of one "Slurm MPI" kernel. hpckernel's SlurmProvisioner renders this template
# and gives it to sbatch on stdin; the sbatch options are on sbatch's command line.
#
# It runs the hub (the Jupyter kernel) on the first node; the hub starts the ranks with srun
# across the allocation. The hub is started again in the same allocation, without queueing,
# whenever the provisioner asks for a restart. No secret is in this script: the hub reads
# its key from the 0600 hub-start file (hub-start.json) the provisioner wrote in the job
# directory.
set -u
job_dir=${job_dir}
hub_pid=
# Slurm's walltime warning (--signal=B:USR1@...) and scancel's TERM go to this shell: pass
# them to the hub, which tells the notebook. On TERM no new hub follows; the shell stays
# until the hub is gone, so that Slurm can still find (and SIGKILL) it. Trapped first: an
# untrapped USR1 would end the job (bash's default), and setup may take a while. A USR1
# before the hub listens (its pid in hub.ready; before that Python would die of it) is kept
# in walltime.warning, which the hub reads when it is ready.
on_usr1() {
    if [ -n "$$hub_pid" ] && [ "$$(cat "$$job_dir/hub.ready" 2>/dev/null)" = "$$hub_pid" ]; then
        kill -USR1 "$$hub_pid" 2>/dev/null
    else
        touch "$$job_dir/walltime.warning"
    fi
}
trap on_usr1 USR1
trap 'touch "$$job_dir/stop"; rm -f "$$job_dir/restart"; [ -n "$$hub_pid" ] && kill -TERM $$hub_pid 2>/dev/null' TERM
# The variables asked for (kernelspec env, export_env) and the notebook's path: sbatch
# passes only an allow-list of the Jupyter server's environment (which holds tokens).
[ -f "$$job_dir/job.env" ] && . "$$job_dir/job.env"
${setup}
cd ${workdir} 2>/dev/null || cd "$$HOME"


while true; do
    # Each (re)start of the hub waits for the provisioner's hub-start file.
    waited=0
    until [ -e "$$job_dir/hub-start.json" ]; do
        [ -e "$$job_dir/stop" ] && exit 0
        if [ "$$waited" -ge ${relaunch_timeout} ]; then
            echo "hpckernel: no restart request within ${relaunch_timeout} s; ending the job" >&2
            exit 0
        fi
        sleep 1
        waited=$$((waited + 1))
    done
    mv -f "$$job_dir/hub-start.json" "$$job_dir/connection.json"
    rm -f "$$job_dir/hub.exit" "$$job_dir/restart"
    ${python} -m hpckernel.hub -f "$$job_dir/connection.json" ${hub_args} &
    hub_pid=$$!
    # wait returns early when a trapped signal arrives: wait again until the hub is gone.
    while kill -0 "$$hub_pid" 2>/dev/null; do wait "$$hub_pid"; done
    wait "$$hub_pid"
    rc=$$?
    hub_pid=
    echo "$$rc" > "$$job_dir/hub.exit"
    [ -e "$$job_dir/restart" ] || exit "$$rc"
done
