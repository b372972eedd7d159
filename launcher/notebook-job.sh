#!/bin/bash
# Batch job of `hpckernel submit`: runs one notebook headless (nbclient) on a hub kernel
# whose ranks srun starts across this allocation, and writes the executed notebook beside
# it. hpckernel renders this template and gives it to sbatch on stdin; the sbatch options
# are on sbatch's command line. The run's settings (JSON, no secrets) follow on stdin.
set -u
${setup}
cd ${workdir} || exit 1
exec ${python} -m hpckernel.submit.execute - <<'HPCKERNEL_RUN'
${spec}
HPCKERNEL_RUN
