"""The widget magics work in the environment the README's first command makes.

``bash setup.sh`` (``pip install -e '.[mpich]'``, no test extras) in a copy of the project;
a kernel started from that environment through jupyter_client answers ``%dashboard``,
``%liveplot``, ``%squeue`` and ``%%sbatch`` with widgets, whose text for front ends
without a widget manager is one line saying so.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import psutil
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

from hpckernel.kernelspec import write_kernel_spec
from tests.kernel.harness import wait_gone

ROOT = Path(__file__).resolve().parents[2]
WIDGET = "application/vnd.jupyter.widget-view+json"


def _default_install(tmp: Path) -> Path:
    """A copy of the project set up by ``bash setup.sh``; its Python."""
    project = tmp / "project"
    shutil.copytree(ROOT, project, ignore=shutil.ignore_patterns(
        ".venv", ".git", "tests", "benchmarks", "artifacts", "__pycache__", "*.egg-info",
        ".*_cache"))
    done = subprocess.run(["bash", "setup.sh"], cwd=project, capture_output=True, text=True,
                          timeout=280)
    assert done.returncode == 0, done.stdout + done.stderr
    return project / ".venv" / "bin" / "python"


CELLS = {"%dashboard": "hpckernel dashboard",
         "%%px\nimport hpckernel\nhpckernel.publish('loss', rank)": None,
         "%liveplot loss": "live plot of 'loss'",
         "%squeue": "Slurm jobs (%squeue)",
         "%%sbatch --time=1\necho hi\n": "Slurm job follower (%%sbatch)"}


def test_widget_magics_in_the_default_install(tmp_path: Path) -> None:
    python = _default_install(tmp_path)
    extras = subprocess.run([python, "-c", "import pytest"], capture_output=True)
    assert extras.returncode != 0, "the default install should not have the test extras"
    write_kernel_spec(tmp_path / "kernels" / "default", ranks=2, python=str(python))
    km = KernelManager(kernel_name="default", kernel_spec_manager=KernelSpecManager(
        kernel_dirs=[str(tmp_path / "kernels")]))
    km.start_kernel(cwd=str(tmp_path))  # no Slurm here: the job widgets show its absence
    kc = km.client()
    kc.start_channels()
    hub = psutil.Process(km.provisioner.pid)  # type: ignore[union-attr]
    try:
        kc.wait_for_ready(timeout=60)
        for code, summary in CELLS.items():
            shown: list[dict[str, Any]] = []

            def keep(msg: dict[str, Any], shown: list[dict[str, Any]] = shown) -> None:
                if msg["msg_type"] in ("execute_result", "display_data"):
                    shown.append(msg["content"]["data"])

            reply = kc.execute_interactive(code, timeout=120, output_hook=keep)
            assert reply["content"]["status"] == "ok", (code, reply["content"])
            if summary is None:
                continue
            (data,) = shown
            assert WIDGET in data, (code, data)
            text = data["text/plain"]
            assert "\n" not in text and text.startswith(summary), text
            assert "cannot show Jupyter widgets" in text
        pids = [hub.pid, *(p.pid for p in hub.children(recursive=True))]
    finally:
        kc.stop_channels()
        km.shutdown_kernel()
    assert wait_gone(pids) == []
