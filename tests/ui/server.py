"""A JupyterLab server for the UI tests, isolated in a temporary directory, and its teardown.

Every Jupyter directory (config, data, runtime, lab settings, workspaces) lives in the
temporary directory; `JUPYTER_PATH` adds the test's "MPI (local)" and "Slurm MPI"
kernelspecs to what the venv provides. The server and every process it starts carry a
marker in their environment, so that teardown finds this server's hubs and ranks (and only
those) even once reparented.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from hpckernel.kernelspec import LOCAL_DISPLAY, LOCAL_NAME, SLURM_DISPLAY, SLURM_NAME, install

from .lab import api

#: generous: JupyterLab's first start is slow on a loaded 2-core machine
START_TIMEOUT = 180.0
STOP_TIMEOUT = 30.0
#: environment variable naming the server, inherited by its kernels, hubs and ranks
MARKER = "HPCKERNEL_UI_SERVER"
KERNEL_PROCESSES = ("hpckernel.hub", "hpckernel.worker", "hpckernel.agent", "hydra_pmi_proxy",
                    "mpiexec")

# JupyterLab user settings: no news or update prompts over the notebook, and every cell
# rendered (no windowing), so that what a test reads is in the DOM.
LAB_SETTINGS: dict[str, dict[str, Any]] = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
        {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


class ServerError(RuntimeError):
    """The server did not start, or left kernel processes behind."""


@dataclass
class LabServer:
    """A running JupyterLab server: its URL, token, root directory and log."""

    url: str
    token: str
    root: Path
    log: Path
    process: subprocess.Popen[bytes]
    marker: str
    #: ranks of its "MPI (local)" kernel
    ranks: int

    @classmethod
    def start(cls, base: Path, log: Path, ranks: int, timeout: float = START_TIMEOUT,
              attempts: int = 3) -> LabServer:
        """A server on 127.0.0.1 with "MPI (local)" on ``ranks`` ranks, its files under
        ``base``, its output in ``log``; returns once ``/api/status`` answers. The free
        port is picked before the server binds it: if another process takes it in between,
        the start is tried again on another port."""
        root = base / "root"
        root.mkdir(parents=True, exist_ok=True)
        marker = secrets.token_hex(8)
        env = _environment(base, marker)
        install(LOCAL_NAME, prefix=str(base / "prefix"), ranks=ranks,
                display_name=LOCAL_DISPLAY)
        # "Slurm MPI" as `hpckernel install --slurm` writes it, on the virtual cluster (the
        # server inherits its SLURM_CONF; the tests that start this kernel need it running).
        install(SLURM_NAME, prefix=str(base / "prefix"), display_name=SLURM_DISPLAY,
                slurm={"partition": "debug", "nodes": 2, "ntasks_per_node": 1,
                       "time": "00:10:00", "job_root": str(base / "jobs"),
                       "poll_interval": 1.0})
        for attempt in range(1, attempts + 1):
            server = cls._launch(base, root, env, log, marker, ranks)
            try:
                server._wait_ready(timeout)
                return server
            except ServerError:
                server._terminate()
                if attempt == attempts or "already in use" not in server.log_tail():
                    raise
        raise AssertionError("unreachable")

    @classmethod
    def _launch(cls, base: Path, root: Path, env: dict[str, str], log: Path, marker: str,
                ranks: int) -> LabServer:
        token = secrets.token_hex(24)
        port = _free_port()
        cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
               "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
               "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
               f"--ServerApp.root_dir={root}", "--LabApp.news_url=None",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
        with log.open("ab") as out:
            process = subprocess.Popen(cmd, env=env, cwd=base, stdout=out,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        return cls(f"http://127.0.0.1:{port}", token, root, log, process, marker, ranks)

    def api(self, method: str, path: str, body: Any = None, timeout: float = 30) -> Any:
        return api(self.url, self.token, method, path, body, timeout)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _wait_ready(self, timeout: float) -> None:
        """Poll ``/api/status`` until it answers, the server exits, or the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise ServerError(f"JupyterLab exited with {self.process.returncode} while "
                                  f"starting; the end of {self.log}:\n{self.log_tail()}")
            try:
                self.api("GET", "/api/status", timeout=5)
                return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise ServerError(f"JupyterLab did not answer /api/status within "
                                  f"{timeout:.0f} s; the end of {self.log}:\n{self.log_tail()}")
            time.sleep(0.25)

    def stop(self) -> None:
        """Shut down every kernel through the REST API (as the UI's "Shut Down" does),
        stop the server, then make sure none of the hubs, MPI launchers and ranks it
        started is left: any that is gets killed, and :class:`ServerError` names it."""
        # Ours: the server's descendants now, and whatever carries its marker later (a
        # rank whose hub died is reparented, but keeps its environment).
        ours = {p for p in _descendants(self.process.pid) if _is_kernel_process(p)}
        problems = self._shutdown_kernels()
        _, alive = psutil.wait_procs(list(ours | set(_marked(self.marker))), timeout=30)
        self._terminate()
        left = {*alive, *_marked(self.marker)}
        if left:
            problems.append("kernel processes left after their kernels were shut down: "
                            + "; ".join(f"{p.pid} {_cmdline(p)}" for p in left))
            _kill_trees(left)
        if problems:
            raise ServerError("\n".join(problems))

    def _shutdown_kernels(self) -> list[str]:
        """DELETE each kernel; the problems met (the server is stopped anyway)."""
        try:
            kernels = self.api("GET", "/api/kernels")
        except (urllib.error.URLError, OSError) as e:
            return [f"listing the kernels failed: {e}"]
        problems = []
        for kernel in kernels:
            try:
                self.api("DELETE", f"/api/kernels/{kernel['id']}", timeout=60)
            except (urllib.error.URLError, OSError) as e:
                problems.append(f"shutting down kernel {kernel['id']} failed: {e}")
        return problems

    def _terminate(self) -> None:
        """SIGTERM (the server then shuts down what kernels remain), SIGKILL after
        ``STOP_TIMEOUT`` seconds."""
        if self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _environment(base: Path, marker: str) -> dict[str, str]:
    """Jupyter's directories inside ``base``: no user config, settings, workspace or
    runtime file is read or written; the kernelspec installed under ``base/prefix`` is
    found through ``JUPYTER_PATH``."""
    dirs = {
        "JUPYTER_CONFIG_DIR": base / "config",
        "JUPYTER_DATA_DIR": base / "data",
        "JUPYTER_RUNTIME_DIR": base / "runtime",
        "JUPYTERLAB_SETTINGS_DIR": base / "lab-settings",
        "JUPYTERLAB_WORKSPACES_DIR": base / "workspaces",
    }
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    for rel, values in LAB_SETTINGS.items():
        path = dirs["JUPYTERLAB_SETTINGS_DIR"] / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    env = {**os.environ, **{k: str(v) for k, v in dirs.items()}}
    env.pop("JUPYTER_CONFIG_PATH", None)
    env["JUPYTER_PATH"] = str(base / "prefix" / "share" / "jupyter")
    env[MARKER] = marker
    return env


def _cmdline(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return "(gone)"


def _is_kernel_process(p: psutil.Process) -> bool:
    return any(name in _cmdline(p) for name in KERNEL_PROCESSES)


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.NoSuchProcess:
        return []


def _marked(marker: str) -> list[psutil.Process]:
    """Hubs, MPI launchers and ranks whose environment names the server ``marker``:
    other kernels on this machine (other test sessions, users) are not ours."""
    found = []
    for p in psutil.process_iter():
        try:
            if _is_kernel_process(p) and p.environ().get(MARKER) == marker:
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def _kill_trees(processes: set[psutil.Process]) -> None:
    victims = set(processes)
    for p in processes:
        victims.update(_descendants(p.pid))
    for p in victims:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(list(victims), timeout=10)
