"""Kernelspecs for hpckernel: make the command, the kernel dict, write the spec, install it.

Pure functions in the shape of ipykernel's ``kernelspec.py``; ``hpckernel install`` is a
thin CLI over :func:`install`.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypedDict

from jupyter_client.kernelspec import KernelSpecManager

from .jobrequest import SettingError
from .jobrequest.options import to_argv
from .resources import template_dir

LOCAL_NAME = "mpi-local"
LOCAL_DISPLAY = "MPI (local)"
SLURM_NAME = "slurm-mpi"
SLURM_DISPLAY = "Slurm MPI"


class KernelSpecError(ValueError):
    """Bad options for a kernelspec; the message says which and why."""


class KernelJSON(TypedDict, total=False):
    """A kernelspec's ``kernel.json``."""

    argv: list[str]
    display_name: str
    language: str
    interrupt_mode: str
    metadata: dict[str, object]
    env: dict[str, str]


def make_argv(ranks: int, python: str | None = None, extra: list[str] | None = None
              ) -> list[str]:
    """The command Jupyter runs to start the hub of a local MPI kernel."""
    if ranks < 1:
        raise KernelSpecError(f"--ranks must be at least 1, not {ranks}")
    return [python or sys.executable, "-m", "hpckernel.hub", "-f", "{connection_file}",
            f"--RankLauncher.ranks={ranks}", *(extra or [])]


def get_kernel_dict(ranks: int, display_name: str | None = None, python: str | None = None,
                    env: dict[str, str] | None = None, extra: list[str] | None = None
                    ) -> KernelJSON:
    """The ``kernel.json`` content of a local MPI kernel with ``ranks`` ranks."""
    spec: KernelJSON = {
        "argv": make_argv(ranks, python, extra),
        "display_name": display_name or LOCAL_DISPLAY,
        "language": "python",
        # The hub turns interrupt messages into interrupts of every busy rank.
        "interrupt_mode": "message",
        "metadata": {"debugger": True, "hpckernel": {"backend": "local", "ranks": ranks},
                     # Managers with transport_encryption="auto" give it CurveZMQ keys.
                     "supported_encryption": ["curve"]},
    }
    if env:
        spec["env"] = env
    return spec


def get_slurm_kernel_dict(provisioner: Mapping[str, object], display_name: str | None = None,
                          python: str | None = None, env: dict[str, str] | None = None
                          ) -> KernelJSON:
    """The ``kernel.json`` of a "Slurm MPI" kernel; ``provisioner`` holds the
    SlurmProvisioner's trait values (partition, nodes, ntasks_per_node, time, …), checked
    by the traits themselves."""
    try:
        options = to_argv(provisioner)
    except SettingError as e:
        raise KernelSpecError(str(e)) from None
    spec: KernelJSON = {
        # Front ends without kernel provisioners (VS Code, jupyter console) run argv: a
        # bridge that submits the job itself. Provisioner-aware ones use the metadata.
        "argv": [python or sys.executable, "-m", "hpckernel.bridge", "-f", "{connection_file}",
                 *options],
        "display_name": display_name or SLURM_DISPLAY,
        "language": "python",
        "interrupt_mode": "message",
        "metadata": {
            "debugger": True,
            # The channels cross the network: jupyter_client may encrypt them.
            "supported_encryption": ["curve"],
            "kernel_provisioner": {"provisioner_name": "slurm-provisioner",
                                   "config": dict(provisioner)},
        },
    }
    if env:
        spec["env"] = env
    return spec


def write_kernel_spec(path: Path | None = None, slurm: Mapping[str, object] | None = None,
                      **kernel: Any) -> Path:
    """Write a kernelspec directory: a local MPI kernel, or with ``slurm`` (the
    provisioner's settings) a "Slurm MPI" one."""
    path = Path(path or tempfile.mkdtemp(suffix="_kernels"))
    path.mkdir(parents=True, exist_ok=True)
    template = template_dir("kernelspec") / LOCAL_NAME
    for item in template.iterdir():
        if item.name != "kernel.json":
            shutil.copy(item, path / item.name)
    spec = (get_kernel_dict(**kernel) if slurm is None
            else get_slurm_kernel_dict(slurm, **kernel))
    (path / "kernel.json").write_text(json.dumps(spec, indent=2) + "\n")
    return path


def install(kernel_name: str = LOCAL_NAME, user: bool = False, prefix: str | None = None,
            kernel_spec_manager: KernelSpecManager | None = None, **kernel: Any) -> str:
    """Install a kernelspec where ``jupyter kernelspec install`` would; its directory."""
    if user and prefix:
        raise KernelSpecError("choose one of --user and --prefix/--sys-prefix")
    ksm = kernel_spec_manager or KernelSpecManager()
    with tempfile.TemporaryDirectory() as tmp:
        source = write_kernel_spec(Path(tmp) / kernel_name, **kernel)
        try:
            return str(ksm.install_kernel_spec(str(source), kernel_name, user=user,
                                               prefix=prefix))
        except PermissionError as e:
            raise KernelSpecError(_denied(e, user, prefix)) from None
        except ValueError as e:  # a kernel name Jupyter does not accept
            raise KernelSpecError(str(e)) from None


def _denied(error: PermissionError, user: bool, prefix: str | None) -> str:
    """One sentence for an install the user may not write: where, and what to use instead."""
    where = f"cannot write to {error.filename}" if error.filename else str(error)
    if user:
        return f"{where} (permission denied): check the owner of your Jupyter data directory"
    if prefix:
        return f"{where} (permission denied): use --user to install for yourself"
    return (f"{where} (permission denied): use --user to install for yourself, or "
            "--sys-prefix to install into this Python environment")


def default_prefix(sys_prefix: bool, prefix: str | None) -> str | None:
    """``--sys-prefix`` means this environment's prefix (as in ipykernel)."""
    return sys.prefix if sys_prefix else (os.fspath(prefix) if prefix else None)
