"""``python -m hpckernel.hub``: ipykernel's kernel app with the hub kernel class."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import sys
import threading

import zmq
from ipykernel.kernelapp import IPKernelApp, kernel_aliases
from jupyter_client.session import Session
from jupyter_core.paths import jupyter_config_path
from traitlets import Bunch, List, Type, Unicode, default, validate

from ..plane.addresses import node_ip
from .badmessages import CheckedSession, cap_log_records
from .hublog import HUB_LOGGERS, own_stderr, reroute_fd2_handlers, send_hub_log_to
from .kernel import HubKernel
from .lease import ClientLease, watch
from .rank_launchers import LocalLauncher, RankLauncher, SrunLauncher

#: Written by the batch script (launcher/slurm-job.sh) when Slurm's walltime warning comes
#: before the hub is listening, and read by the next hub.
WALLTIME_MARKER = "walltime.warning"
#: Cells whose input the hub's IPython history writes to its database at once (its
#: ``HistoryManager.db_cache_size``, unless configured)
HISTORY_BATCH = 10


class HubApp(IPKernelApp):
    """The hub's ``IPKernelApp``: runs ``HubKernel``, logs to the real stderr, warns of a
    batch job's walltime (USR1) and ends the ranks on its TERM (``scancel``, walltime)."""

    name = "hpckernel-hub"
    # Any kernel class is accepted here so that a `c.IPKernelApp.kernel_class` meant for
    # plain IPython kernels (ipython_kernel_config.py, which the hub reads too) is ignored
    # with a warning instead of stopping the hub with a TraitError.
    kernel_class = Type(HubKernel, klass="ipykernel.kernelbase.Kernel").tag(  # type: ignore[assignment]
        config=True)

    aliases = {**kernel_aliases, "ranks": "RankLauncher.ranks"}  # type: ignore[assignment]
    # What --help-all lists (and the aliases name): the hub's and the launchers' settings.
    classes = [*IPKernelApp.classes, HubKernel, RankLauncher, LocalLauncher, SrunLauncher]
    ready_file = Unicode("", help="File to create once the kernel listens (the Slurm "
                         "provisioner waits for it).").tag(config=True)
    config_files = List(Unicode(), help="Config files read, later ones winning: ipykernel's "
                        "(ipython_kernel_config.py), then the hub's own.")

    @validate("kernel_class")
    def _keep_a_hub_kernel(self, proposal: Bunch) -> type[HubKernel]:
        value = proposal["value"]
        if isinstance(value, type) and issubclass(value, HubKernel):
            return value
        self.log.warning("ignoring kernel_class=%s from the configuration: the hpckernel hub "
                         "needs a HubKernel (subclass); set HubApp.kernel_class to change it",
                         getattr(value, "__qualname__", value))
        return HubKernel

    @default("outstream_class")
    def _hub_outstream(self) -> str:
        # Flushes only when something waits (outstream.py): most cells print in the ranks.
        return "hpckernel.hub.outstream.HubOutStream"

    @default("config_files")
    def _both_config_files(self) -> list[str]:
        # The hub is an ipykernel: settings users put where ipykernel reads them count too.
        return ["ipython_kernel_config.py", self.config_file_name]

    def init_config_files(self) -> None:
        """Read Jupyter's config directories too, not only IPython's."""
        # Jupyter's config directories (JUPYTER_CONFIG_DIR or ~/.jupyter, then the
        # environment's and the system's), after the IPython profile's and before IPython's
        # environment and system directories (which IPython adds in this call).
        self.config_file_paths.extend(jupyter_config_path())
        super().init_config_files()

    def initialize(self, argv: list[str] | None = None) -> None:
        """ipykernel's set-up, with the hub's own log kept out of cells."""
        # The hub's own log goes to the kernel's real stderr (the server's log, the batch
        # job's output), never into a cell: taken before ipykernel captures descriptor 2.
        log_stream = own_stderr()
        send_hub_log_to(log_stream)
        super().initialize(argv)
        hub_loggers = [logging.getLogger(name) for name in HUB_LOGGERS]
        reroute_fd2_handlers(log_stream, logging.getLogger(), *hub_loggers)
        # A bad message costs one short log line, whatever it carries.
        cap_log_records(self.log, logging.getLogger(), *hub_loggers)
        if self.ready_file:
            with open(self.ready_file, "w") as f:
                f.write(f"{os.getpid()}\n")
            self._walltime_warned_before_start()

    def _walltime_warned_before_start(self) -> None:
        """Slurm's walltime warning came before this hub could take a signal (the batch
        script keeps it in a file beside the ready file): warn now."""
        marker = os.path.join(os.path.dirname(self.ready_file), WALLTIME_MARKER)
        try:
            os.unlink(marker)
        except FileNotFoundError:
            return
        self._walltime_warning()

    @default("session")
    def _session_default(self) -> Session:
        return CheckedSession(parent=self)

    def init_connection_file(self) -> None:
        """ipykernel's connection file, bound to this node's address in a batch job."""
        super().init_connection_file()
        self.ip = node_ip(self.ip)  # "auto" in a batch job: bind this node's address

    _watched: list[tuple[zmq.Socket[bytes], zmq.Socket[bytes]]]  # (socket, its monitor)

    def _bind_socket(self, s: zmq.Socket[bytes], port: int) -> int:
        # For the lease, the control and stdin channels are watched from before they bind (a
        # client may connect the moment they do); not shell, where ipykernel's own debug
        # socket is connected for good.
        if s.socket_type == zmq.ROUTER and s is not self.shell_socket:
            if not hasattr(self, "_watched"):
                self._watched = []
                # At exit after the lease's thread has stopped, however the start went: an
                # open monitor would keep ipykernel's close() waiting in Context.term.
                atexit.register(self._stop_watching)
            self._watched.append((s, watch(s)))
        port = super()._bind_socket(s, port)
        return port

    def init_signal(self) -> None:
        """ipykernel's signals, and a batch job's USR1 (walltime warning) and TERM."""
        super().init_signal()
        # In a batch job: USR1 is Slurm's walltime warning (--signal=B:USR1@...), TERM its
        # scancel / end of walltime; the batch script passes both on to the hub.
        signal.signal(signal.SIGUSR1, lambda *_: self._walltime_warning())
        signal.signal(signal.SIGTERM, lambda *_: self._terminated())

    def init_kernel(self) -> None:
        """Create the kernel; a Slurm kernel outside an allocation stops here, saying why."""
        history = self.config.HistoryManager
        if "db_cache_size" not in history:
            # IPython commits each cell's input to its SQLite file as the cell starts: ≈1 ms
            # of the hub's CPU and ≈20 thread switches, while the ranks want the cores. The
            # front end's history requests and %history see every cell all the same (IPython
            # writes the cache out before it reads); a hub killed outright loses ≤ 9 lines.
            history.db_cache_size = HISTORY_BATCH
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
            lease = ClientLease([monitor for _, monitor in self._watched],
                                kernel.client_timeout, self._lease_expired)
            lease.start()
            atexit.register(lease.stop)  # runs before ipykernel's own close()
        else:
            self._stop_watching()

    def _stop_watching(self) -> None:
        """End the monitors of the lease. The sockets stop sending events first: libzmq
        sends them blocking, and with nobody at the monitor's end its I/O thread would hang
        at the next connection."""
        for sock, monitor in self._watched:
            try:
                sock.disable_monitor()
            except zmq.ZMQError:
                pass  # the socket is closed already
            monitor.close(linger=0)

    def _walltime_warning(self) -> None:
        self.log.warning("Slurm's walltime warning (USR1): telling the notebook")
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
        history = self.shell.history_manager if self.shell is not None else None
        if history is not None:
            # os._exit skips IPython's own write-out at exit (HISTORY_BATCH).
            with contextlib.suppress(Exception):
                history.writeout_cache()
        os._exit(0)


def main() -> None:
    """``python -m hpckernel.hub``: the kernelspec's command."""
    HubApp.launch_instance()
