"""Where a live job keeps its files: ``<job root>/live-<job>.<step>/``, a 0700 directory of
the job's owner (checked as the kernel's job directories are, ``plane/private.py``), with

- ``plane.json`` — the internal plane of the job's node agents (as the kernel's);
- ``live.json``  — what an attaching notebook needs: the endpoint's address, its CurveZMQ
  public key and the client key pair it admits (0600: only the owner attaches);
- ``agent-<node>.json`` — each node agent's address for its ranks.

The job root is ``$HPCKERNEL_JOB_ROOT`` or ``~/.hpckernel/jobs``, as for the Slurm kernel.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from ..plane.private import write_private

LIVE_FILE = "live.json"
JOB_ROOT_ENV = "HPCKERNEL_JOB_ROOT"
#: Overrides the job's id (a run with mpiexec, outside Slurm).
LIVE_ID_ENV = "HPCKERNEL_LIVE_ID"
#: Set (to anything) in a kernel's ranks' environment to run them live (kernel_ranks.py).
LIVE_ENV = "HPCKERNEL_LIVE"
#: The argument that runs an ipykernel kernel live (notebook.py).
LIVE_KERNEL = "--IPKernelApp.extensions=['hpckernel.live.notebook']"


@dataclass
class LiveInfo:
    """Contents of ``live.json``."""

    job: str
    step: str
    url: str  # tcp://<node address>:<port>, the endpoint notebooks connect to
    server_public: str  # the endpoint's CurveZMQ key (z85)
    client_public: str  # the one client key it admits, and its secret
    client_secret: str
    size: int  # ranks
    nodes: int
    host: str  # the endpoint's node
    pid: int


def job_root(root: str | None = None) -> Path:
    """The directory live jobs' directories go in."""
    return Path(root or os.environ.get(JOB_ROOT_ENV) or Path.home() / ".hpckernel" / "jobs")


def job_id() -> tuple[str, str]:
    """(job, step) of this process: Slurm's ids, else ``$HPCKERNEL_LIVE_ID``, else one
    shared by the ranks of one ``mpiexec`` (their launcher's process id)."""
    live = os.environ.get(LIVE_ID_ENV)
    if live:
        return live, "0"
    job = os.environ.get("SLURM_JOB_ID")
    if job:
        return job, os.environ.get("SLURM_STEP_ID", "0")
    return f"local-{os.getppid()}", "0"


def live_dir(job: str, step: str, root: str | None = None) -> Path:
    """The directory of job step ``job.step``'s files (``live.json``, ``plane.json``), under
    :func:`job_root`: rank 0 makes it, a notebook reads it."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", f"live-{job}.{step}")
    return job_root(root) / name


def write_live_info(directory: Path, info: LiveInfo) -> Path:
    """Write ``live.json`` (0600: only the job's owner can attach) for notebooks to find
    (the endpoint, at its start)."""
    path = directory / LIVE_FILE
    write_private(path, json.dumps(asdict(info)))
    return path


def parse_live_info(text: str) -> LiveInfo:
    """``ValueError`` on anything but a live.json."""
    try:
        return LiveInfo(**json.loads(text))
    except (TypeError, json.JSONDecodeError) as e:
        raise ValueError(f"not a live job's {LIVE_FILE}: {e}") from None


def live_jobs(root: str | None = None) -> set[str]:
    """The jobs with a live endpoint in the job root (``%squeue`` and the workflow widget
    give them an Attach button): one directory listing."""
    base = job_root(root)
    try:
        names = [entry.name for entry in os.scandir(base)
                 if entry.name.startswith("live-") and (Path(entry.path) / LIVE_FILE).exists()]
    except OSError:
        return set()
    return {name[len("live-"):].rsplit(".", 1)[0] for name in names}


def newest_step(names: list[str], job: str) -> str | None:
    """Of the directory names in the job root, the newest step's of ``job`` (highest step
    number), or None."""
    prefix = f"live-{job}."
    steps = [n[len(prefix):] for n in names if n.startswith(prefix)]
    numbered = sorted((int(s), s) for s in steps if s.isdigit())
    if numbered:
        return numbered[-1][1]
    return sorted(steps)[-1] if steps else None
