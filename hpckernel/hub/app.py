"""``python -m hpckernel.hub``: ipykernel's kernel app with the hub kernel class."""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import threading

from ipykernel.kernelapp import IPKernelApp, kernel_aliases
from traitlets import Type, Unicode

from ..plane.addresses import node_ip
from .kernel import HubKernel
from .launch import SrunLauncher
from .lease import ClientLease


class HubApp(IPKernelApp):
    name = "hpckernel-hub"
    kernel_class = Type(HubKernel, klass=HubKernel).tag(config=True)  # type: ignore[assignment]

    aliases = {**kernel_aliases, "ranks": "RankLauncher.ranks"}  # type: ignore[assignment]
    ready_file = Unicode("", help="File to create once the kernel listens (the Slurm "
                         "provisioner waits for it).").tag(config=True)

    def initialize(self, argv: list[str] | None = None) -> None:
        # hpckernel's own log goes to the kernel's real stderr (the server's log, the batch
        # job's output), never into the notebook through ipykernel's captured sys.stderr.
        handler = logging.StreamHandler(sys.__stderr__)
        handler.setFormatter(logging.Formatter("[%(name)s] %(levelname)s | %(message)s"))
        package_log = logging.getLogger("hpckernel")
        package_log.addHandler(handler)
        package_log.propagate = False
        super().initialize(argv)
        if self.ready_file:
            with open(self.ready_file, "w") as f:
                f.write(f"{os.getpid()}\n")

    def init_connection_file(self) -> None:
        super().init_connection_file()
        self.ip = node_ip(self.ip)  # "auto" in a batch job: bind this node's address

    def init_sockets(self) -> None:
        super().init_sockets()
        # Monitors must be attached before the control and shell threads start.
        self._lease_sockets = [self.control_socket, self.shell_socket]

    def init_signal(self) -> None:
        super().init_signal()
        # In a batch job: USR1 is Slurm's walltime warning (--signal=B:USR1@...), TERM its
        # scancel / end of walltime; the batch script passes both on to the hub.
        signal.signal(signal.SIGUSR1, lambda *_: self._walltime_warning())
        signal.signal(signal.SIGTERM, lambda *_: self._terminated())

    def init_kernel(self) -> None:
        super().init_kernel()
        kernel: HubKernel = self.kernel
        if isinstance(kernel.launcher, SrunLauncher) and not os.environ.get("SLURM_JOB_ID"):
            # A Slurm kernel's ranks never fall back to this machine (a shared login node).
            print("hpckernel: this is a Slurm kernel and there is no Slurm allocation here "
                  "(SLURM_JOB_ID is unset): start it through its kernelspec (the Slurm "
                  "provisioner or `python -m hpckernel.bridge`), not as a bare hub",
                  file=sys.__stderr__)
            sys.exit(2)
        # Ranks must not outlive the hub, however it ends.
        atexit.register(kernel.stop_ranks)
        if kernel.client_timeout > 0:
            lease = ClientLease(self._lease_sockets, kernel.client_timeout,
                                self._lease_expired)
            lease.start()
            atexit.register(lease.stop)  # runs before ipykernel's own close()

    def _walltime_warning(self) -> None:
        allocation = self.kernel.allocation
        left = allocation.time_left() if allocation is not None else None
        when = f"in {left / 60:.0f} min" if left is not None else "soon"
        self.kernel.notify(f"this kernel's Slurm job reaches its walltime {when}: save your "
                           "work; running cells will be stopped then")

    _terminating = False

    def _terminated(self) -> None:
        if self._terminating:  # Slurm signals the hub and the batch script passes it on too
            return
        self._terminating = True
        self.kernel.notify("Slurm is ending this kernel's job (scancel, walltime or a node "
                           "failure); the kernel stops now")
        self.kernel.stop_ranks()
        # A normal exit, so ipykernel's close() still delivers the notice (os._exit would
        # drop what the IOPub thread has not sent yet) — but exit for sure before Slurm's
        # SIGKILL comes.
        self.io_loop.add_callback(self.io_loop.stop)
        threading.Timer(3.0, os._exit, (143,)).start()

    def _lease_expired(self) -> None:
        self.kernel.stop_ranks()
        os._exit(0)


def main() -> None:
    HubApp.launch_instance()
