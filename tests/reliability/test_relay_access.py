"""The bridge's relay (``python -m hpckernel.bridge`` without ``--login``) on a shared
machine: another real Unix user can neither read the output nor send requests through the
front end's loopback ports when the connection file has no CurveZMQ keys, and a connection
file with an empty key is refused. A real hub (with CurveZMQ, as the bridge starts it), the
real relay in front of it, a real jupyter_client, and a second user's real processes."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.blocking import BlockingKernelClient
from jupyter_client.connect import write_connection_file

from hpckernel.bridge.relay import Relay
from tests.intruder import as_intruder
from tests.kernel.conftest import _close
from tests.kernel.harness import Kernel

PORTS = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")


@pytest.fixture
def relayed(tmp_path: Path) -> Iterator[tuple[dict[str, Any], BlockingKernelClient]]:
    """A hub behind a relay, as the bridge sets them up, and the owner's client of the
    relay's ports; the front end's connection file has a key but no CurveZMQ keys."""
    hub = Kernel(tmp_path / "hub", ranks=1, encrypted=True)
    info = hub.km.get_connection_info()
    front_file, front = write_connection_file(str(tmp_path / "front.json"), ip="127.0.0.1",
                                              key=info["key"])
    relay = Relay(front)
    relay.connect(info, info["curve_publickey"].encode(), info["curve_secretkey"].encode())
    client = BlockingKernelClient()
    client.load_connection_file(front_file)
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        yield front, client
    finally:
        client.stop_channels()
        relay.close()
        _close(hub)


SNOOP = """
import json, time, zmq
ctx = zmq.Context()
sub = ctx.socket(zmq.SUB)
sub.linger = 0
sub.setsockopt(zmq.SUBSCRIBE, b"")
sub.connect("tcp://127.0.0.1:{iopub_port}")
shell = ctx.socket(zmq.DEALER)
shell.linger = 0
shell.connect("tcp://127.0.0.1:{shell_port}")
header = {{"msg_id": "x", "username": "x", "session": "x", "msg_type": "kernel_info_request",
          "version": "5.3", "date": ""}}
shell.send_multipart([b"<IDS|MSG>", b"", *[json.dumps(p).encode() for p in (header, {{}},
                                                                             {{}}, {{}})]])
print("ready", flush=True)
seen, answered = [], False
end = time.monotonic() + {seconds}
while time.monotonic() < end:
    if sub.poll(100):
        seen.append(b"".join(sub.recv_multipart()).decode(errors="replace"))
    if shell.poll(0):
        answered = True
        shell.recv_multipart()
print(json.dumps({{"seen": seen, "answered": answered}}))
"""


def test_another_user_cannot_read_output_or_send_requests_through_the_relay(
        relayed: tuple[dict[str, Any], BlockingKernelClient], intruder: str,
        intruder_site: str) -> None:
    front, client = relayed
    result: dict[str, Any] = {}

    def snoop() -> None:
        result["attack"] = as_intruder(intruder, SNOOP.format(seconds=6, **front),
                                       intruder_site)

    thread = threading.Thread(target=snoop)
    thread.start()
    deadline = time.monotonic() + 6
    while thread.is_alive() and time.monotonic() < deadline:
        reply = client.execute_interactive("%%local\nprint('secret output')", timeout=30)
        assert reply["content"]["status"] == "ok"
        time.sleep(0.2)
    thread.join()
    attack: subprocess.CompletedProcess[str] = result["attack"]
    assert attack.returncode == 0, attack.stderr
    found = json.loads(attack.stdout.splitlines()[-1])
    assert not any("secret output" in m for m in found["seen"]), "another user read the output"
    assert found["seen"] == [] and found["answered"] is False, found
    # The owner's client is served as before.
    assert client.execute_interactive("1 + 1", timeout=30)["content"]["status"] == "ok"


def test_a_connection_file_with_an_empty_key_is_refused(tmp_path: Path) -> None:
    path, front = write_connection_file(str(tmp_path / "front.json"), ip="127.0.0.1", key=b"")
    with pytest.raises(ValueError, match='empty "key"'):
        Relay(front)
    done = subprocess.run([sys.executable, "-m", "hpckernel.bridge", "-f", path,
                           "--partition=debug", "--nodes=1", f"--job-root={tmp_path}"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.splitlines()  # one line, and no job was submitted
    assert 'empty "key"' in line and "submitted" not in line, line
