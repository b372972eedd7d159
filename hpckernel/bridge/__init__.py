"""The "Slurm MPI" kernel for front ends without kernel provisioners: kernel.json's argv
runs ``python -m hpckernel.bridge``, which submits the job and connects the front end's
ports to the hub (``argv_kernel.py``: the process; ``relay.py``: the ZMQ relay;
``watchdog.py``: cancels the job if the bridge is killed; ``errors.py``: its errors, under
``BridgeError``)."""
