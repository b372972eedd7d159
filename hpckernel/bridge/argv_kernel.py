"""``python -m hpckernel.bridge -f CONNECTION_FILE [Slurm options]``: the "Slurm MPI" kernel
for front ends that run kernel.json's ``argv`` themselves (VS Code, ``jupyter console``,
nteract, gateways, old jupyter_client) and never read ``metadata.kernel_provisioner``.

It does what the Slurm provisioner does, with the same ``KernelJob``: submit, report the
queue wait on stderr, wait for the hub; then it connects the front end's five ports (from
the connection file it was given) to the hub: ``ssh -L`` on exactly those ports with
``--login``, a ZMQ relay on loopback otherwise. The hub uses the front end's key (and
CurveZMQ keys, when the file has them), so messages pass through unchanged.

Lifetimes: SIGINT interrupts the ranks; SIGTERM, SIGHUP or the front end going away cancel
the job; a SIGKILL is covered by a watchdog process that cancels it; the job ending
(scancel, walltime, node failure) ends this process with Slurm's reason on stderr.
Failures (``BridgeError``, ``ProvisionerError``, ``SlurmError``) end it with their message.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import uuid
from typing import cast

import zmq
from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.session import Session

from ..jobrequest import JobSettings, SettingError
from ..jobrequest.options import add_arguments, from_args
from ..jupyter_channels import PORTS, channel_address, key_bytes
from ..provisioner.errors import ProvisionerError
from ..provisioner.kernel_job import KernelJob
from ..slurm import SlurmError
from .errors import BridgeError, ConnectionFileError
from .relay import Relay, check_key

log = logging.getLogger("hpckernel.bridge")


class Bridge:
    """One front end's kernel: the job, and the path from the front end's ports to it."""

    def __init__(self, settings: JobSettings, connection: KernelConnectionInfo) -> None:
        self.settings = settings
        self.connection = connection
        self.job = KernelJob(settings, log)
        self.relay: Relay | None = None
        self.stopped = asyncio.Event()
        self.watchdog: asyncio.subprocess.Process | None = None
        self._interrupts: zmq.Socket[bytes] | None = None
        #: the hub is known (its job runs): SIGINT interrupts it from then on, never cancels
        self._hub_known = False
        self._interrupt_pending = False  # SIGINT came before the tunnels were up
        self._parent = os.getppid()

    def stop(self, why: str) -> None:
        """End the kernel (a signal, the front end gone): the job is cancelled."""
        if not self.stopped.is_set():
            log.info("%s: cancelling the kernel's job", why)
            self.stopped.set()
            self.job.stopping = True  # also ends a wait in the queue

    async def run(self) -> int:
        """Start the kernel and serve the front end until the job or the front end ends;
        the exit code (1 with the reason on stderr when the kernel could not start or
        died)."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(signum, self.stop, signal.Signals(signum).name)
        loop.add_signal_handler(signal.SIGINT, self.interrupt)
        parent_watch = asyncio.create_task(self._watch_parent())
        self.watchdog = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hpckernel.bridge.watchdog",
            stdin=asyncio.subprocess.PIPE, start_new_session=True)
        try:
            return await self._serve()
        except (BridgeError, ProvisionerError, SlurmError, SettingError, OSError,
                ValueError) as e:
            log.error("%s", e)
            return 1
        finally:
            parent_watch.cancel()
            await self._close()

    async def _serve(self) -> int:
        if not self.settings.login:
            self.relay = Relay(self.connection)  # the ports are ours from now on
        hub_info, public, secret = self._hub_connection()
        hub = await self.job.start(hub_info, uuid.uuid4().hex, os.getcwd(),
                                   submitted=self._arm_watchdog)
        self._hub_known = True
        if self.relay is not None:
            self.relay.connect(hub, public, secret)
            control = f"tcp://{hub['ip']}:{hub['control_port']}"
        else:
            await self.job.tunnel(hub, self.connection,
                                  {p: self.connection[p] for p in PORTS})
            self._arm_watchdog()  # now with the SSH master that carries the tunnels
            control = f"tcp://127.0.0.1:{self.connection['control_port']}"
        self._interrupts = self._control_socket(control, public, secret)
        log.info("Slurm job %s: the kernel is connected", self.job.job_id)
        if self._interrupt_pending:
            self.interrupt()
        while not self.stopped.is_set():
            code = await self.job.poll()
            if code is not None:
                return self._ended(code)
            try:
                await asyncio.wait_for(self.stopped.wait(),
                                       1.0 if self.settings.login else 0.5)
            except asyncio.TimeoutError:
                pass
        return 0

    def _hub_connection(self) -> tuple[KernelConnectionInfo, bytes, bytes]:
        """The hub's connection info (the front end's key; its CurveZMQ keys, or with the
        relay new ones, since the hub's ports are on the network) and the key pair."""
        info = KernelConnectionInfo(**self.connection)
        public, secret = info.get("curve_publickey"), info.get("curve_secretkey")
        if not (public and secret) and self.relay is not None and self.settings.encryption:
            public, secret = (k.decode() for k in zmq.curve_keypair())
            info["curve_publickey"], info["curve_secretkey"] = public, secret
        return info, key_bytes(public), key_bytes(secret)

    def _control_socket(self, address: str, public: bytes, secret: bytes
                        ) -> zmq.Socket[bytes]:
        sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
        sock.linger = 0
        if public:
            sock.curve_secretkey, sock.curve_publickey = secret, public
            sock.curve_serverkey = public
        sock.connect(address)
        return sock

    def interrupt(self) -> None:
        """SIGINT: an interrupt_request to the hub, which interrupts every busy rank."""
        if self._interrupts is None:
            if not self._hub_known:
                self.stop("SIGINT while the job is not running yet")
            else:
                # The front end may already reach the hub through a tunnel that is up while
                # the others are still being made: interrupt once they all are.
                self._interrupt_pending = True
                log.info("SIGINT: interrupting the ranks once the tunnels are up")
            return
        self._interrupt_pending = False
        session = Session(key=key_bytes(self.connection.get("key")),
                          signature_scheme=self.connection.get("signature_scheme",
                                                               "hmac-sha256"))
        session.send(self._interrupts, "interrupt_request", {})
        log.info("SIGINT: interrupting the ranks")

    def _ended(self, code: int) -> int:
        """The job ended by itself: a shutdown the front end asked for, or Slurm's doing."""
        liveness = self.job.liveness
        reason = liveness.reason if liveness is not None else ""
        final = liveness.final if liveness is not None else None
        if code == 0 and (final is None or final.state == "COMPLETED"):
            log.info("Slurm job %s: the kernel has shut down", self.job.job_id)
            return 0
        sys.stderr.write(f"hpckernel: the kernel ended: {reason or f'exit code {code}'}\n")
        return code or 1

    async def _watch_parent(self) -> None:
        """The front end that started us went away (we were re-parented): stop."""
        # No event tells a process that its parent died (short of Linux's PDEATHSIG).
        while os.getppid() == self._parent:  # noqa: ASYNC110
            await asyncio.sleep(1.0)
        self.stop("the front end that started the kernel is gone")

    def _arm_watchdog(self) -> None:
        """Give the watchdog its latest orders (the job exists now, or its tunnels do)."""
        if self.watchdog is not None and self.watchdog.stdin is not None:
            orders = self.job.orphan_orders()
            self.watchdog.stdin.write(json.dumps(orders).encode() + b"\n")

    async def _close(self) -> None:
        if self._interrupts is not None:
            self._interrupts.close(linger=0)
        if self.relay is not None:
            await asyncio.to_thread(self.relay.close)
        try:
            await self.job.close(wait=20.0)
        finally:
            if self.watchdog is not None and self.watchdog.stdin is not None:
                self.watchdog.stdin.write(b'"done"\n')
                self.watchdog.stdin.close()
                await self.watchdog.wait()


def read_connection_file(path: str) -> KernelConnectionInfo:
    """The front end's connection file, checked: tcp, and a port for each channel;
    ConnectionFileError saying what is wrong."""
    try:
        with open(path) as f:
            connection = json.load(f)
    except (OSError, ValueError) as e:
        raise ConnectionFileError(f"cannot read the connection file {path}: {e}") from None
    if not isinstance(connection, dict):
        raise ConnectionFileError(f"the connection file {path} holds no JSON object")
    if connection.get("transport", "tcp") != "tcp":
        raise ConnectionFileError(f"the connection file asks for transport "
                                  f"{connection.get('transport')!r}: the Slurm kernel "
                                  "serves tcp only")
    try:
        address = channel_address("", connection)
    except ValueError as e:
        raise ConnectionFileError(f"the connection file {path}: {e}") from None
    connection.update({port: address[port] for port in PORTS})
    check_key(connection)
    return cast(KernelConnectionInfo, connection)


def build_parser() -> argparse.ArgumentParser:
    """The bridge's command line: ``-f CONNECTION_FILE`` and every Slurm kernel setting as
    an option (``hpckernel.jobrequest.options``)."""
    parser = argparse.ArgumentParser(
        prog="python -m hpckernel.bridge",
        description="Start a Slurm MPI kernel for a front end that runs kernel.json's argv.")
    parser.add_argument("-f", dest="connection_file", required=True,
                        help="the front end's connection file (its ports, key, CurveZMQ keys)")
    add_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """``python -m hpckernel.bridge``: 2 for bad settings or connection file, else the
    kernel's end (see :meth:`Bridge.run`)."""
    args = build_parser().parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("hpckernel: %(message)s"))
    package_log = logging.getLogger("hpckernel")
    package_log.addHandler(handler)
    package_log.setLevel(logging.INFO)
    try:
        settings = from_args(args)
        connection = read_connection_file(args.connection_file)
    except (SettingError, ConnectionFileError) as e:
        print(f"hpckernel: {e}", file=sys.stderr)
        return 2
    return asyncio.run(Bridge(settings, connection).run())
