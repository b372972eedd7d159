"""Notebooks as batch jobs: ``hpckernel submit NOTEBOOK`` runs a whole notebook headless.

- ``spec.py``: the run's settings (``RunSpec``), saved as a small JSON run record beside the
  notebook so that ``--resubmit`` can repeat the run;
- ``params.py``: papermill-style parameters, injected after the cell tagged ``parameters``;
- ``execute.py``: the run itself — nbclient on a hub kernel whose ranks are the Slurm
  allocation's (``SrunLauncher``) or this machine's (``--local``);
- ``batch.py``: the Slurm side — the job script (``launcher/notebook-job.sh``) and sbatch.
"""
