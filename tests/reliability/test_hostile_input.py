"""Hostile and malformed input on the kernel's sockets and in kernelspecs: rejected, and the
kernel keeps serving. Cells that misbehave on the ranks: the kernel survives or says why."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import zmq
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.provisioning import KernelProvisionerFactory
from traitlets import TraitError

from hpckernel.kernelspec import write_kernel_spec
from tests.kernel.harness import Kernel


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    k = Kernel(tmp_path_factory.mktemp("hostile"), ranks=2,
               extra=["--HubKernel.interrupt_grace=5"])
    yield k
    k.shutdown()


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Kernel, Path]]:
    """A 1-rank kernel whose log (the hub's stderr) is a file."""
    tmp = tmp_path_factory.mktemp("logged")
    k = Kernel(tmp, ranks=1, log=tmp / "hub.log")
    yield k, tmp / "hub.log"
    k.shutdown()


def wait_for_log(log: Path, text: str, start: int = 0, timeout: float = 30) -> str:
    """The log from byte ``start`` on, once ``text`` is in it (the hub writes it from
    another process: there is nothing to wait on but the file)."""
    deadline = time.monotonic() + timeout
    while True:
        with open(log, "rb") as f:
            f.seek(start)
            new = f.read().decode(errors="replace")
        if text in new:
            return new
        assert time.monotonic() < deadline, f"{text!r} never reached the log: {new[-2000:]}"
        time.sleep(0.1)


def _message(key: bytes, msg_type: str, content: dict[str, Any]) -> list[bytes]:
    header = {"msg_id": uuid.uuid4().hex, "username": "test", "session": uuid.uuid4().hex,
              "msg_type": msg_type, "version": "5.3", "date": "2026-01-01T00:00:00Z"}
    parts = [json.dumps(p).encode() for p in (header, {}, {}, content)]
    signature = hmac.new(key, b"".join(parts), hashlib.sha256).hexdigest().encode()
    return [b"<IDS|MSG>", signature, *parts]


def _socket(kernel: Kernel, channel: str) -> zmq.Socket[bytes]:
    info = kernel.km.get_connection_info()
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(f"tcp://{info['ip']}:{info[f'{channel}_port']}")
    return sock


MARK = "print('hostile code ran')"


@pytest.mark.parametrize("channel", ["shell", "control", "stdin"])
def test_bad_messages_are_rejected_and_the_kernel_serves_on(kernel: Kernel,
                                                            channel: str) -> None:
    key = kernel.km.session.key
    sock = _socket(kernel, channel)
    try:
        good = _message(key, "execute_request", {"code": MARK, "silent": False})
        forged = _message(b"not-the-key", "execute_request", {"code": MARK, "silent": False})
        sock.send_multipart(forged)                                  # bad signature
        sock.send_multipart([b"<IDS|MSG>", good[1], good[2]])        # truncated frames
        sock.send_multipart([b"<IDS|MSG>", b"", *good[2:]])          # unsigned
        sock.send_multipart(_message(key, "no_such_request", {}))    # unknown msg_type
        sock.send_multipart([b"\xff" * 64])                          # junk
        if channel == "shell":
            sock.send_multipart(good)                                # a real request …
            assert sock.poll(30000), "the kernel did not answer a valid request"
            reply = sock.recv_multipart()
            assert json.loads(reply[2])["msg_type"] == "execute_reply"
            sock.send_multipart(good)                                # … replayed
            assert not sock.poll(3000), "a replayed message was answered"
    finally:
        sock.close()
    result = kernel.ok("print('still serving')")
    assert result.text() == "[stdout:0-1] still serving\n"


def test_huge_message_does_not_take_the_hub_down(kernel: Kernel) -> None:
    sock = _socket(kernel, "shell")
    try:
        big = "x = '" + "y" * (64 * 2**20) + "'"
        sock.send_multipart(_message(kernel.km.session.key, "execute_request",
                                     {"code": f"%%local\n{big}\nprint(len(x))",
                                      "silent": False}))
        # Either answered or refused: what matters is that the hub lives and serves.
        sock.poll(60000)
    finally:
        sock.close()
    assert kernel.km.is_alive()
    assert kernel.ok("print('after the big one')").text() == "[stdout:0-1] after the big one\n"


def test_a_huge_bad_signature_costs_one_short_log_line(
        logged: tuple[Kernel, Path]) -> None:
    kernel, log = logged
    sock = _socket(kernel, "shell")
    before = log.stat().st_size
    try:
        forged = _message(kernel.km.session.key, "execute_request",
                          {"code": MARK, "silent": False})
        forged[1] = b"f" * 2**20  # a 1 MB signature
        sock.send_multipart(forged)
        wait_for_log(log, "Invalid Signature", before)
    finally:
        sock.close()
    assert kernel.ok("print('still serving')").text() == "[stdout:0] still serving\n"
    grown = log.stat().st_size - before
    assert grown < 2048, f"one bad message wrote {grown} bytes to the log"
    # Whatever else puts a huge text into a log record (the kernel's log, hpckernel's own),
    # the record is cut.
    before = log.stat().st_size
    kernel.ok("%%local\nimport logging\nget_ipython().kernel.log.error('x' * 10**6)\n"
              "logging.getLogger('hpckernel.test').error('y' * 10**6)")
    new = wait_for_log(log, "more characters]", before)
    wait_for_log(log, "yyy", before)
    assert log.stat().st_size - before < 2 * 4500, new[:200]


def _plane_peer(plane: dict[str, Any], tcp: bool) -> zmq.Socket[bytes]:
    """A peer of the hub's plane with the ranks' credentials (IPC: a same-user process on
    the node; TCP: the ranks' CurveZMQ key) but no rank's identity."""
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    # The first launch's rank 7, which a 1-rank kernel does not have: it must not take over
    # a rank's route.
    sock.setsockopt(zmq.IDENTITY, b"1.7")
    if tcp:
        sock.curve_serverkey = plane["server_public"].encode()
        sock.curve_publickey = plane["client_public"].encode()
        sock.curve_secretkey = plane["client_secret"].encode()
    sock.connect(plane["tcp_url"] if tcp else plane["ipc_url"])
    return sock


def test_malformed_plane_messages_are_dropped_and_the_plane_serves_on(
        logged: tuple[Kernel, Path]) -> None:
    kernel, log = logged
    plane_file = kernel.ok("%%local\nprint(get_ipython().kernel.pool.plane_file)").text()
    plane = json.loads(Path(plane_file.strip()).read_text())
    for tcp in (False, True):
        start = log.stat().st_size
        sock = _plane_peer(plane, tcp)
        try:
            for frames in ([b"stream", b"[" * 100000, b""],   # RecursionError in json
                           [b"\xff\xfe", b"{}", b""],          # type not ASCII
                           [b"stream", b"\xff" * 64, b""],      # header not UTF-8
                           [b"stream", b"[]", b""],             # header not an object
                           [b"stream"]):                        # too few frames
                sock.send_multipart(frames)
            # Then a well-formed one: that it is read (and refused) shows the plane still
            # receives on this socket.
            sock.send_multipart([b"stream", b"{}", b""])
            new = wait_for_log(log, "unknown rank 7", start)
        finally:
            sock.close()
        assert new.count("dropped a malformed plane message") == 6, new
        assert "does not decode: RecursionError" in new
    assert kernel.ok("print(rank)").text() == "[stdout:0] 0\n"


def test_the_lease_counts_only_clients_that_authenticate(tmp_path: Path) -> None:
    timeout = 5
    kernel = Kernel(tmp_path, ranks=1, encrypted=True,
                    extra=[f"--HubKernel.client_timeout={timeout}"])
    hub = psutil.Process(kernel.hub_pid)
    stop = threading.Event()
    try:
        info = kernel.km.get_connection_info()
        assert info.get("curve_publickey"), "the test needs a CurveZMQ kernel"
        # A real client (the manager's control connection, the client's channels) holds it.
        with pytest.raises(psutil.TimeoutExpired):
            hub.wait(timeout + 2)
        assert kernel.ok("print('held')").text() == "[stdout:0] held\n"

        def attack() -> None:
            """Raw TCP connections and CurveZMQ peers with a made-up key, renewed every
            second on the shell and control ports."""
            ctx = zmq.Context()
            while not stop.is_set():
                opened: list[Any] = []
                for port in (info["shell_port"], info["control_port"]):
                    opened.append(socket.create_connection((info["ip"], port)))
                    peer = ctx.socket(zmq.DEALER)
                    peer.linger = 0
                    public, secret = zmq.curve_keypair()
                    peer.curve_serverkey, peer.curve_publickey = public, public
                    peer.curve_secretkey = secret
                    peer.connect(f"tcp://{info['ip']}:{port}")
                    opened.append(peer)
                stop.wait(1.0)
                for conn in opened:
                    conn.close()
            ctx.term()

        attacker = threading.Thread(target=attack)
        attacker.start()
        kernel.kc.stop_channels()
        kernel.km._close_control_socket()  # the manager's own client connection
        hub.wait(timeout + 15)  # psutil.TimeoutExpired: the strangers kept it alive
    finally:
        stop.set()
        if "attacker" in locals():
            attacker.join()
        kernel.km.shutdown_kernel(now=True)


def test_cells_that_misbehave_on_the_ranks(kernel: Kernel) -> None:
    # Replacing or closing sys.stdout on a rank: the next cells still print.
    kernel.ok("import sys, io\nsys.stdout = io.StringIO()")
    kernel.run("import sys\nsys.stdout.close()")
    assert kernel.ok("print('printing again')").text() == "[stdout:0-1] printing again\n"
    # A rank that ignores SIGINT is named stuck after the grace period, not hung forever.
    msg_id = kernel.submit("import signal, time\nsignal.signal(signal.SIGINT, lambda *a: None)\n"
                           "print('armed', flush=True)\ntime.sleep(120)")
    assert kernel.collect(msg_id, until="[stdout:0-1] armed") is None
    kernel.km.interrupt_kernel()
    result = kernel.collect(msg_id, timeout=60)
    assert result is not None and result.status == "error"
    assert "RankStuck" in result.content["evalue"]
    assert "fresh ranks ready" in kernel.ok("%restart_ranks").text()
    # A forking cell: the child must not take over the rank's connection.
    forked = kernel.ok("import os\npid = os.fork()\nif pid == 0:\n    os._exit(0)\n"
                       "os.waitpid(pid, 0)\nprint('parent goes on')")
    assert forked.text() == "[stdout:0-1] parent goes on\n"
    # MPI_Abort ends the MPI job: named, and the ranks come back on restart.
    aborted = kernel.run("from mpi4py import MPI\nif rank == 1:\n    MPI.COMM_WORLD.Abort(4)\n"
                         "import time\ntime.sleep(30)", timeout=90)
    assert aborted.status == "error" and "RankDied" in aborted.content["evalue"]
    kernel.ok("%restart_ranks")
    assert kernel.ok("print('back')").text() == "[stdout:0-1] back\n"


def test_bad_local_kernel_config_fails_clearly(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "hpckernel.hub", "--RankLauncher.ranks=-3",
                           f"--IPKernelApp.connection_dir={tmp_path}"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "ranks must be at least 1, not -3" in done.stderr


@pytest.mark.parametrize(("config", "message"), [
    ({"nodes": -1}, "nodes must be at least 1, not -1"),
    ({"time": "tomorrow"}, "bad walltime 'tomorrow'"),
    ({"partitoin": "debug"}, "unknown SlurmProvisioner setting partitoin"),
])
def test_malformed_slurm_kernelspecs_fail_before_submission(tmp_path: Path,
                                                             config: dict[str, Any],
                                                             message: str) -> None:
    spec_dir = tmp_path / "kernels" / "bad-slurm"
    write_kernel_spec(spec_dir, slurm={"nodes": 1, "time": "10"})
    spec = json.loads((spec_dir / "kernel.json").read_text())
    spec["metadata"]["kernel_provisioner"]["config"].update(config)
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    kernel_spec = KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")]).get_kernel_spec(
        "bad-slurm")
    with pytest.raises(TraitError, match=message):
        KernelProvisionerFactory.instance().create_provisioner_instance(
            "k", kernel_spec, parent=None)
    assert sys.executable  # nothing was submitted: no Slurm command ran before the error


def test_a_hub_whose_lease_expires_writes_out_its_history(tmp_path: Path) -> None:
    # The hub writes its history every 10 cells (hub/app.py); ending on an expired lease
    # skips IPython's write-out at exit, so the hub writes it out itself.
    kernel = Kernel(tmp_path, ranks=1, extra=["--HubKernel.client_timeout=3"])
    hub = psutil.Process(kernel.hub_pid)
    try:
        marker = f"lease_marker_{uuid.uuid4().hex}"
        kernel.ok(f"{marker} = 1")
        hist_file = kernel.ok("%%local\nprint(get_ipython().history_manager.hist_file)"
                              ).text().strip()
        kernel.kc.stop_channels()
        kernel.km._close_control_socket()
        hub.wait(30)
    finally:
        kernel.km.shutdown_kernel(now=True)
    with contextlib.closing(sqlite3.connect(hist_file)) as db:
        rows = db.execute("SELECT source_raw FROM history WHERE source_raw = ?",
                          (f"{marker} = 1",)).fetchall()
    assert rows == [(f"{marker} = 1",)]
