"""Every place the README names for settings reaches a real hub kernel.

The kernelspec's argv, ``ipython_kernel_config.py`` and ``hpckernel_hub_config.py`` in a
Jupyter config directory, ``ipython_kernel_config.py`` in the IPython profile, and the
command line (jupyter_client's ``extra_arguments``): each sets a different trait here, and
the test sees what each one changes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psutil
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

from hpckernel.kernelspec import write_kernel_spec

from .harness import wait_gone


def _run(kc: Any, code: str) -> tuple[dict[str, Any], str]:
    """The reply's content and the cell's stdout."""
    out: list[str] = []

    def keep(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])

    reply = kc.execute_interactive(code, output_hook=keep, timeout=60)
    return reply["content"], "".join(out)


def test_each_documented_config_place_reaches_the_kernel(tmp_path: Path) -> None:
    jupyter_dir, profile = tmp_path / "jupyter", tmp_path / "ipython" / "profile_default"
    jupyter_dir.mkdir()
    profile.mkdir(parents=True)
    log = tmp_path / "from-hub-config.jsonl"
    (jupyter_dir / "ipython_kernel_config.py").write_text(
        "c.RankLauncher.env = {'HPCK_SET_BY': 'ipython_kernel_config'}\n")
    (jupyter_dir / "hpckernel_hub_config.py").write_text(
        f"c.HubKernel.provenance_log = {str(log)!r}\n")
    (profile / "ipython_kernel_config.py").write_text(
        "c.IPKernelApp.exec_lines = ['from_profile = 42']\n"
        "c.HubKernel.max_reply_size = '1GB'\n"  # the command line's value wins
        # Meant for plain IPython kernels: the hub ignores it (with a warning) and starts.
        "c.IPKernelApp.kernel_class = 'ipykernel.ipkernel.IPythonKernel'\n")
    write_kernel_spec(tmp_path / "kernels" / "cfg", ranks=3)  # argv: --RankLauncher.ranks=3
    km = KernelManager(kernel_name="cfg", kernel_spec_manager=KernelSpecManager(
        kernel_dirs=[str(tmp_path / "kernels")]))
    env = {**__import__("os").environ, "JUPYTER_CONFIG_DIR": str(jupyter_dir),
           "IPYTHONDIR": str(tmp_path / "ipython")}
    km.start_kernel(env=env, cwd=str(tmp_path),
                    extra_arguments=["--HubKernel.max_reply_size=1MB"])
    kc = km.client()
    kc.start_channels()
    hub = psutil.Process(km.provisioner.pid)  # type: ignore[union-attr]
    try:
        kc.wait_for_ready(timeout=60)
        reply, out = _run(kc, "import os\nprint(size, os.environ.get('HPCK_SET_BY'))")
        assert reply["status"] == "ok", reply
        assert out == "[stdout:0-2] 3 ipython_kernel_config\n"  # argv; Jupyter dir's file
        assert [json.loads(line)["code"] for line in log.read_text().splitlines()] == [
            "import os\nprint(size, os.environ.get('HPCK_SET_BY'))"]  # the hub's own file
        reply, out = _run(kc, "%%local\nprint(from_profile)")
        assert out == "42\n", reply  # the IPython profile's file
        reply, _ = _run(kc, "%%local\nimport numpy\nranks.push({'a': numpy.zeros(2**19)})\n"
                        "ranks.pull('a')")  # 3 x 4 MiB over the command line's 1 MB
        assert reply["status"] == "error", reply
        assert "ReplyTooLarge" in str(reply) and "333.3 KB this rank" in str(reply), reply
        pids = [hub.pid, *(p.pid for p in hub.children(recursive=True))]
    finally:
        kc.stop_channels()
        km.shutdown_kernel()
    assert wait_gone(pids) == []


def test_help_all_lists_every_setting_of_the_hub_and_its_launchers() -> None:
    """``python -m hpckernel.hub --help-all`` (traitlets' listing) names the hub's and the
    launchers' settings; it crashed on the ``--ranks`` alias before."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "hpckernel.hub", "--help-all"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    for setting in ("--HubKernel.fanin=", "--HubKernel.agent_return=",
                    "--RankLauncher.ranks=", "--LocalLauncher.mpiexec=", "--SrunLauncher.mpi="):
        assert setting in out.stdout, setting
