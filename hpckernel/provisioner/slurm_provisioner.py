"""``SlurmProvisioner``: starts the hub of a "Slurm MPI" kernel inside a Slurm batch job.

jupyter_client's KernelManager calls the methods below in its usual order (pre_launch →
launch_kernel → poll… → shutdown_requested → wait → cleanup); each docstring names its
caller. The provisioner and the batch job meet in the kernel's job directory: the
provisioner writes the connection file (key, ports 0) there as ``launch.json``; the batch
script starts the hub on it; the hub binds its ports and rewrites it as
``connection.json``, which the provisioner reads back. No secret is ever on a command line.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import zmq
from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.provisioning import KernelProvisionerBase
from traitlets import Bool, Float, Integer, List, TraitError, Unicode, validate

from ..slurm import (
    JobInfo,
    ParseError,
    Poller,
    Slurm,
    SlurmError,
    SubmitError,
    Watch,
    check_request,
    parse_duration,
)
from ..slurm.environment import check_names
from .batch import ENV_FILE, JobRequest, job_env, render_script
from .jobdir import JobDir, LocalJobDir, RemoteJobDir, remote_home
from .ssh import LoginError, SSHConnection, SSHRunner

PORTS = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")


class KernelStartError(RuntimeError):
    """The kernel's batch job could not start; the message carries Slurm's reason."""


class SlurmProvisioner(KernelProvisionerBase):  # type: ignore[misc]
    """Runs the kernel's hub in a Slurm allocation; its ranks span the allocation."""

    partition = Unicode("", help="Slurm partition (default: the cluster's default).").tag(
        config=True)
    nodes = Integer(1, help="Number of nodes.").tag(config=True)
    ntasks_per_node = Integer(1, help="MPI ranks per node.").tag(config=True)
    overcommit = Bool(False, help="Allow more ranks per node than it has CPUs (sbatch "
                      "--overcommit): ranks that mostly wait for cells, small test nodes."
                      ).tag(config=True)
    time = Unicode("01:00:00", help="Walltime, in any Slurm time format "
                   "(minutes, HH:MM:SS, D-HH:MM:SS).").tag(config=True)
    account = Unicode("", help="Slurm account to charge.").tag(config=True)
    qos = Unicode("", help="Slurm quality of service.").tag(config=True)
    constraint = Unicode("", help="Slurm node features (--constraint).").tag(config=True)
    sbatch_args = List(Unicode(), help="More sbatch options, e.g. ['--exclusive'].").tag(
        config=True)
    setup = Unicode("", help="Shell lines run in the job before the hub starts, e.g. "
                    "'module load python'.").tag(config=True)
    python = Unicode(sys.executable, help="Python on the compute nodes that has hpckernel "
                     "installed (default: this one, on a shared file system).").tag(config=True)
    job_root = Unicode("", help="Where job directories are made; the compute nodes must "
                       "see it (default: ~/.hpckernel/jobs where sbatch runs).").tag(config=True)
    jobid = Unicode("", help="Run in this existing allocation (e.g. from `salloc "
                    "--no-shell`) as a job step, instead of submitting a job; the allocation "
                    "is left running at shutdown.").tag(config=True)
    login = Unicode("", help="Reach the cluster through this login node: anything `ssh` "
                    "accepts (user@host, a Host alias of ~/.ssh/config).").tag(config=True)
    ssh_args = List(Unicode(), help="More options for ssh, e.g. ['-F', 'my_config'].").tag(
        config=True)
    connect_timeout = Float(20.0, help="Seconds to wait for the login node to answer.").tag(
        config=True)
    login_timeout = Float(120.0, help="Seconds the login node may stay unreachable before "
                          "the kernel is reported dead.").tag(config=True)
    launch_timeout = Float(600.0, help="Seconds the job may stay pending before it is "
                           "cancelled and the start fails; 0: wait forever.").tag(config=True)
    walltime_warning = Integer(300, help="Warn in the notebook this many seconds before the "
                               "walltime ends (0: no warning).").tag(config=True)
    client_timeout = Float(600.0, help="The hub ends itself, releasing the allocation, after "
                           "this many seconds without a client (the Jupyter server died)."
                           ).tag(config=True)
    relaunch_timeout = Integer(300, help="Seconds the job waits for the next hub after a "
                               "restart before it ends.").tag(config=True)
    poll_interval = Float(5.0, help="Seconds between checks of the job with Slurm while the "
                          "kernel runs.").tag(config=True)
    hub_ip = Unicode("auto", help="Address the hub binds on its node ('auto': the address of "
                     "the node's name).").tag(config=True)
    encryption = Bool(True, help="Encrypt the kernel's channels with CurveZMQ.").tag(
        config=True)
    export_env = List(Unicode(), help="Names of more variables of the Jupyter server's "
                      "environment to pass into the job; it gets an allow-list (PATH, HOME, "
                      "the locale, Python, module-system, Slurm and MPI settings) and the "
                      "kernelspec's env, never the whole environment.").tag(config=True)

    def __init__(self, **kwargs: Any) -> None:
        # A typo in a kernelspec's provisioner config must not be silently ignored.
        unknown = sorted(set(kwargs) - set(self.class_trait_names()) - {"parent", "config"})
        if unknown:
            settings = sorted(self.class_trait_names(config=True))
            raise TraitError(f"unknown SlurmProvisioner setting {', '.join(unknown)} in the "
                             f"kernelspec; the settings are: {', '.join(settings)}")
        super().__init__(**kwargs)

    @validate("nodes", "ntasks_per_node")
    def _positive(self, proposal: dict[str, Any]) -> int:
        if proposal["value"] < 1:
            raise TraitError(f"{proposal['trait'].name} must be at least 1, "
                             f"not {proposal['value']}")
        return int(proposal["value"])

    @validate("export_env")
    def _check_names(self, proposal: dict[str, Any]) -> list[str]:
        try:
            return check_names(proposal["value"])
        except ValueError as e:
            raise TraitError(f"export_env: {e}") from None

    @validate("time")
    def _check_time(self, proposal: dict[str, Any]) -> str:
        try:
            parse_duration(proposal["value"])
        except ParseError as e:
            raise TraitError(f"bad walltime {proposal['value']!r}: {e}; use e.g. 30, "
                             "01:00:00 or 1-00:00:00") from None
        return str(proposal["value"])

    job_id: str | None = None
    job_dir: JobDir | None = None
    _hub_ip = ""
    _exit_code: int | None = None
    _last_check = 0.0
    _stop_launch = False
    _shutdown_asked = False  # the hub ends because the manager asked (shutdown/restart)

    _slurm: Slurm | None = None
    _step: asyncio.subprocess.Process | None = None  # our srun, with ``jobid``
    _ssh: SSHConnection | None = None
    _tunnels: dict[int, int] | None = None  # hub port -> local port
    _login_lost_at: float | None = None
    _job_env: dict[str, str] | None = None  # sbatch's (and srun's) environment here
    _job_watch: Watch | None = None  # the pending start's watch with the Slurm poller

    @property
    def slurm(self) -> Slurm:
        if self._slurm is None:
            self._slurm = Slurm(SSHRunner(self._ssh) if self._ssh is not None else None)
        return self._slurm

    async def _connect(self) -> None:
        """Open the SSH master connection to the login node, if there is one."""
        if self.login and (self._ssh is None or not self._ssh.alive):
            self._ssh = SSHConnection(self.login, self.ssh_args, self.connect_timeout)
            await self._ssh.open()
            self._slurm = None

    async def _job_root(self) -> str:
        if self.job_root:
            return self.job_root
        home = await remote_home(self._ssh) if self._ssh is not None else str(Path.home())
        return f"{home}/.hpckernel/jobs"

    @property
    def has_process(self) -> bool:
        return self.job_id is not None and self._exit_code is None

    @property
    def ranks(self) -> int:
        return self.nodes * self.ntasks_per_node

    # -- start ----------------------------------------------------------------------------

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        """Prepare the connection info (key, CurveZMQ keys) the hub will use.

        Called from ``KernelManager.pre_start_kernel()``, at start and restart."""
        km = self.parent
        assert km is not None, "a provisioner is created by a KernelManager"
        if self.encryption and zmq.has("curve") and km.curve_publickey is None:
            km.curve_publickey, km.curve_secretkey = zmq.curve_keypair()
        self.connection_info = km.get_connection_info()
        self._stop_launch = self._shutdown_asked = False
        kwargs.pop("extra_arguments", None)
        return await super().pre_launch(cmd=list(self.kernel_spec.argv), **kwargs)

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        """Submit the batch job (or, on restart, ask the running job for a fresh hub) and
        wait until the hub listens; its connection info.

        Called from ``KernelManager.launch_kernel()``."""
        await self._connect()
        if self.job_dir is None:
            path = f"{await self._job_root()}/{(self.kernel_id or uuid.uuid4().hex)[:8]}"
            self.job_dir = (RemoteJobDir(self._ssh, path) if self._ssh is not None
                            else LocalJobDir(Path(path)))
            await self.job_dir.create()
        for stale in ("hub.exit", "hub.ready", "stop"):
            await self.job_dir.remove(stale)
        await self.job_dir.write_private("launch.json", json.dumps(self._launch_file()))
        self._job_env, env_file = job_env(kwargs.get("env"), [
            *self.export_env, *(self.kernel_spec.env or {})])
        await self.job_dir.write_private(ENV_FILE, env_file)
        self._exit_code = None
        if self.job_id is None and self.jobid:
            self.job_id = await self._start_step()
        elif self.job_id is None:
            # A local working directory means nothing on the login node: use the home there.
            self.job_id = await self._submit(None if self._ssh else kwargs.get("cwd"))
        else:
            self.log.info("Slurm job %s: restarting the hub in the same allocation",
                          self.job_id)
        try:
            info = await self._wait_for_hub()
        except BaseException:
            # A failed or cancelled start (shutdown while pending) must not leave a job.
            await asyncio.shield(self._cancel_job())
            raise
        finally:
            if self._job_watch is not None:
                self._job_watch.close()
                self._job_watch = None
        if self._ssh is not None:
            info = await self._tunnel(info)
        self.connection_info.update(info)  # type: ignore[typeddict-item]
        return self.connection_info

    async def _tunnel(self, hub: dict[str, Any]) -> dict[str, Any]:
        """Forward a loopback port here to each of the hub's ports (through the login node);
        the connection info the client uses. Ports already forwarded are kept."""
        assert self._ssh is not None
        tunnels = self._tunnels or {}
        local: dict[str, Any] = {"ip": "127.0.0.1"}
        for name in PORTS:
            remote = int(hub[name])
            tunnels[remote] = await self._ssh.forward(hub["ip"], remote, tunnels.get(remote))
            local[name] = tunnels[remote]
        self._tunnels = tunnels
        self._hub_ip = str(hub["ip"])
        return local

    async def _check_login(self) -> int | None:
        """Rebuild a lost SSH master and its tunnels on the same local ports, so connected
        clients just reconnect; None while fine, an exit code once the login node has been
        gone for longer than ``login_timeout``."""
        assert self._ssh is not None
        if self._ssh.alive:
            return None
        now = time.monotonic()
        if self._login_lost_at is None:
            self._login_lost_at = now
            self.log.warning("lost the SSH connection to %s; reconnecting", self.login)
        try:
            await self._connect()
            for remote, local in (self._tunnels or {}).items():
                await self._ssh.forward(self._hub_ip, remote, local)
        except (LoginError, SlurmError) as e:
            if now - self._login_lost_at > self.login_timeout:
                self.log.error("the login node %s has been unreachable for %.0f s: %s",
                               self.login, now - self._login_lost_at, e)
                self._exit_code = 1
                return 1
            return None
        self.log.warning("SSH connection to %s restored after %.1f s; the tunnels are back",
                         self.login, time.monotonic() - self._login_lost_at)
        self._login_lost_at = None
        return None

    def _launch_file(self) -> dict[str, Any]:
        info = {k: (v.decode() if isinstance(v, bytes) else v)
                for k, v in self.connection_info.items()}
        if self.job_id is None:
            # A new job: the hub picks free ports. A restart in the same job keeps the
            # ports, so that connected clients (and the server's websockets) carry on.
            info.update({port: 0 for port in PORTS})
        info.pop("ip", None)  # the hub binds its own node's address
        return info

    def _hub_args(self) -> list[str]:
        assert self.job_dir is not None
        return [f"--ip={self.hub_ip}",
                "--HubKernel.launcher_class=hpckernel.hub.launch.SrunLauncher",
                f"--RankLauncher.ranks={self.ranks}",
                f"--HubKernel.job_dir_parent={self.job_dir}",
                f"--HubKernel.plane_ip={self.hub_ip}",
                f"--HubKernel.client_timeout={self.client_timeout:g}",
                f"--HubApp.ready_file={self.job_dir}/hub.ready"]

    async def _submit(self, cwd: str | None) -> str:
        assert self.job_dir is not None
        slurm = self.slurm
        partition = await slurm.partition(self.partition or None)
        check_request(partition, nodes=self.nodes, time_limit=parse_duration(self.time))
        request = JobRequest(nodes=self.nodes, ntasks_per_node=self.ntasks_per_node,
                             time=self.time, partition=self.partition, account=self.account,
                             qos=self.qos, constraint=self.constraint,
                             job_name=f"hpckernel-{(self.kernel_id or '')[:8]}",
                             walltime_warning=self.walltime_warning,
                             overcommit=self.overcommit, extra=list(self.sbatch_args))
        script = render_script(job_dir=str(self.job_dir), python=self.python,
                               hub_args=self._hub_args(), setup=self.setup,
                               workdir=cwd or os.getcwd(),
                               relaunch_timeout=self.relaunch_timeout)
        job_id = await slurm.submit(script, request.sbatch_options(
            f"{self.job_dir}/slurm-%j.out"), env=self._job_env)
        self.log.info("Slurm job %s submitted: %d node(s) x %d rank(s), walltime %s",
                      job_id, self.nodes, self.ntasks_per_node, self.time)
        return job_id

    async def _start_step(self) -> str:
        """Start the batch script as a one-task step of the existing allocation ``jobid``;
        the step lives as long as our ``srun`` (a child of this process, or of ssh)."""
        assert self.job_dir is not None
        info = await self.slurm.job(self.jobid)
        if info is None or not info.running:
            raise KernelStartError(
                f"Slurm job {self.jobid} is {'unknown' if info is None else info.state}: "
                "SlurmProvisioner.jobid must name a running allocation (salloc --no-shell)")
        script = render_script(job_dir=str(self.job_dir), python=self.python,
                               hub_args=self._hub_args(), setup=self.setup,
                               relaunch_timeout=self.relaunch_timeout)
        argv = ["srun", f"--jobid={self.jobid}", "--overlap", "--nodes=1", "--ntasks=1",
                f"--output={self.job_dir}/slurm-{self.jobid}.out", "bash", "-s"]
        if self._ssh is not None:
            self._step = await self._ssh.spawn(argv, asyncio.subprocess.DEVNULL)
        else:
            self._step = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL, start_new_session=True, env=self._job_env)
        assert self._step.stdin is not None
        self._step.stdin.write(script.encode())
        await self._step.stdin.drain()
        self._step.stdin.close()
        self.log.info("Slurm job %s: hub started as a job step on %s", self.jobid,
                      info.nodelist)
        return self.jobid

    async def _wait_for_hub(self) -> dict[str, Any]:
        assert self.job_id is not None
        started = time.monotonic()
        info = await self._job_state(None)
        checked = time.monotonic()
        while not self._stop_launch:
            if not info.running or time.monotonic() - checked > self.poll_interval:
                info = await self._job_state(info)
                checked = time.monotonic()
            if info.running:
                hub = await self._hub_connection()
                if hub is not None:
                    self.log.info("Slurm job %s: kernel ready on %s after %.1f s",
                                  self.job_id, info.nodelist, time.monotonic() - started)
                    return hub
            elif self.launch_timeout and time.monotonic() - started > self.launch_timeout:
                raise KernelStartError(
                    f"Slurm job {self.job_id} did not start within {self.launch_timeout:g} s "
                    f"(still {info.state}: {info.reason_text or info.reason}); it was "
                    "cancelled. Ask for fewer nodes or less time, or raise "
                    "SlurmProvisioner.launch_timeout.")
            await asyncio.sleep(0.2 if info.running else 1.0)
        raise KernelStartError(f"Slurm job {self.job_id}: the start was cancelled")

    async def _job_state(self, before: JobInfo | None) -> JobInfo:
        """The job's state, logged when it or its reason changed; raises if it ended.

        The process's Slurm poller follows the job, in one squeue with every other kernel
        start of this server: a look at once, then pauses growing from 1 s; this reads what
        it last saw."""
        if self._job_watch is None:
            self._job_watch = Poller.of(self.slurm).watch([self.job_id or ""], interval=1.0)
        snapshot = await self._job_watch.snapshot()
        while self.job_id not in snapshot.jobs:  # Slurm has not answered yet
            if self._stop_launch:
                raise KernelStartError(f"Slurm job {self.job_id}: the start was cancelled")
            if snapshot.trouble:
                self.log.warning("Slurm job %s: %s", self.job_id, snapshot.trouble)
            snapshot = await self._job_watch.next()
        info = snapshot.jobs[self.job_id or ""]
        if info is None or info.ended:
            raise KernelStartError(await self._ended_message(info))
        reason = info.reason_text or info.reason
        if before is None or (before.state, before.reason_text or before.reason) != (
                info.state, reason):
            self.log.info("Slurm job %s: %s%s", self.job_id, info.state,
                          f" ({reason})" if reason else "")
        return info

    async def _hub_connection(self) -> dict[str, Any] | None:
        """The hub's address and ports once it has bound them, else None."""
        assert self.job_dir is not None
        if await self.job_dir.read("hub.ready") is None:
            return None  # the hub is not listening yet
        text = await self.job_dir.read("connection.json")
        try:
            written = json.loads(text or "")
        except ValueError:
            return None  # not written yet, or half written
        if not all(written.get(port) for port in PORTS) or not written.get("ip"):
            return None
        return {"ip": written["ip"], **{port: written[port] for port in PORTS}}

    async def _ended_message(self, info: JobInfo | None) -> str:
        assert self.job_dir is not None
        if info is None:
            info = await self.slurm.accounting(self.job_id or "")
        what = "is gone" if info is None else (
            f"ended: {info.state}" + (f" ({info.reason_text or info.reason})"
                                      if info.reason_text or info.reason else "")
            + (f", exit code {info.exit_code}:{info.signal}" if info.exit_code is not None
               else ""))
        out = await self.job_dir.read(f"slurm-{self.job_id}.out") or ""
        tail = "\n".join(out.strip().splitlines()[-15:])
        return (f"Slurm job {self.job_id} {what}" + (f"\njob output:\n{tail}" if tail else ""))

    # -- running ----------------------------------------------------------------------

    async def poll(self) -> int | None:
        """None while the hub runs, else an exit code.

        Called from ``KernelManager.is_alive()`` — by jupyter_server's restarter every few
        seconds; Slurm itself is asked at most every ``poll_interval`` seconds."""
        if self.job_id is None or self.job_dir is None:
            return 0
        if self._exit_code is not None:
            return self._exit_code
        if self._ssh is not None and (lost := await self._check_login()) is not None:
            return lost
        if self._login_lost_at is not None:
            return None  # still reconnecting: nothing can be read from the cluster
        hub_exit = await self.job_dir.read("hub.exit")
        if hub_exit is not None:
            code = int(hub_exit.strip() or 1)
            if not self._shutdown_asked:
                await self._report_death(f"the kernel's hub exited with code {code}")
            return code
        if time.monotonic() - self._last_check < self.poll_interval:
            return None
        self._last_check = time.monotonic()
        try:
            info = await self.slurm.job(self.job_id)
        except SlurmError as e:
            self.log.warning("cannot check Slurm job %s: %s", self.job_id, e)
            return None
        if info is not None and not info.ended:
            return None
        self.log.warning("%s", await self._ended_message(info))
        self._exit_code = (info.exit_code or 1) if info is not None else 1
        return self._exit_code

    async def _report_death(self, what: str) -> None:
        """Log why a hub ended that nobody asked to end: Slurm's account of the job
        (cancelled, out of time, node failure), once it has ended."""
        assert self.job_id is not None
        try:
            info = await self.slurm.wait_gone(self.job_id, timeout=15)
        except (SlurmError, TimeoutError):
            info = await self.slurm.job(self.job_id)
        self.log.warning("%s; %s", what, await self._ended_message(info))
        self._exit_code = 1

    async def wait(self) -> int | None:
        """Wait until the hub (or the job) has ended.

        Called from ``KernelManager`` while it finishes a shutdown."""
        # Slurm has no event to wait on: poll (poll() itself limits how often Slurm is asked).
        while (code := await self.poll()) is None:  # noqa: ASYNC110
            await asyncio.sleep(0.5)
        return code

    async def send_signal(self, signum: int) -> None:
        """Signal the batch job (which passes USR1/TERM on to the hub).

        Called from ``KernelManager.signal_kernel()``; interrupts use messages instead."""
        if self.job_id is not None and signum:
            await self.slurm.cancel(self.job_id, signal=str(signum))

    async def kill(self, restart: bool = False) -> None:
        """End the job. Called from ``KernelManager`` when a hub did not stop by itself."""
        await self._cancel_job()

    async def terminate(self, restart: bool = False) -> None:
        """End the job. Called from ``KernelManager`` when a hub did not stop by itself."""
        await self._cancel_job()

    async def shutdown_requested(self, restart: bool = False) -> None:
        """Tell the batch job whether a new hub follows this one.

        Called from ``KernelManager.request_shutdown()`` before the shutdown message."""
        self._stop_launch = not restart
        self._shutdown_asked = True
        if self.job_dir is not None:
            await self.job_dir.touch("restart" if restart else "stop")

    async def cleanup(self, restart: bool = False) -> None:
        """On a real shutdown: cancel the job, wait until Slurm reports it gone, remove the
        job directory's secrets. Called from ``KernelManager.cleanup_resources()``."""
        if restart:
            return
        await self._cancel_job()
        try:
            if self.job_dir is not None:
                for name in ("launch.json", "connection.json", ENV_FILE):
                    await self.job_dir.remove(name)
        finally:
            if self._ssh is not None:
                await self._ssh.close()  # and with it every tunnel
                self._ssh = None

    async def _cancel_job(self) -> None:
        job_id, self.job_id = self.job_id, None
        if job_id is None:
            return
        if self._step is not None:
            await self._end_step()
            return
        try:
            await self.slurm.cancel(job_id)
            info = await self.slurm.wait_gone(job_id, timeout=self.get_shutdown_wait_time())
            self.log.info("Slurm job %s ended%s", job_id, f": {info.state}" if info else "")
        except (SlurmError, TimeoutError) as e:
            self.log.error("could not cancel Slurm job %s: %s — cancel it with scancel",
                           job_id, e)

    async def _end_step(self) -> None:
        """Stop our step in the user's allocation; the allocation itself stays."""
        step, self._step = self._step, None
        if step is None or step.returncode is not None:
            return
        if self.job_dir is not None:
            await self.job_dir.touch("stop")
        step.terminate()  # srun passes it on to the step's processes
        try:
            await asyncio.wait_for(step.wait(), self.get_shutdown_wait_time())
        except asyncio.TimeoutError:
            step.kill()
            await step.wait()
        self.log.info("Slurm job %s: hub step ended; the allocation stays", self.jobid)

    # -- persistence and timing ---------------------------------------------------------

    async def get_provisioner_info(self) -> dict[str, Any]:
        """Called by servers that persist kernels, so a restarted one can re-attach."""
        info: dict[str, Any] = await super().get_provisioner_info()
        info.update({"job_id": self.job_id, "job_dir": str(self.job_dir or ""),
                     "tunnels": self._tunnels, "hub_ip": getattr(self, "_hub_ip", None)})
        return info

    async def load_provisioner_info(self, provisioner_info: dict[str, Any]) -> None:
        """The inverse of ``get_provisioner_info``: re-attach to a running job."""
        await super().load_provisioner_info(provisioner_info)
        self.job_id = provisioner_info.get("job_id")
        job_dir = provisioner_info.get("job_dir")
        tunnels = provisioner_info.get("tunnels")
        self._tunnels = {int(k): int(v) for k, v in tunnels.items()} if tunnels else None
        self._hub_ip = provisioner_info.get("hub_ip") or ""
        await self._connect()
        if self._ssh is not None and self._tunnels:
            for remote, local in self._tunnels.items():
                await self._ssh.forward(self._hub_ip, remote, local)
        if job_dir:
            self.job_dir = (RemoteJobDir(self._ssh, job_dir) if self._ssh is not None
                            else LocalJobDir(Path(job_dir)))

    def get_shutdown_wait_time(self, recommended: float = 5.0) -> float:
        """Called from ``KernelManager.finish_shutdown()``: scancel takes a few seconds."""
        return max(recommended, 30.0)

    def get_stable_start_time(self, recommended: float = 10.0) -> float:
        """A start includes the queue wait."""
        return max(recommended, self.launch_timeout or 3600.0)


__all__ = ["KernelStartError", "SlurmProvisioner", "SubmitError"]
