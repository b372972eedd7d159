"""The "Slurm MPI" kernel through an SSH login node (the test bed's real sshd), and the
security promises: secrets off command lines, private files, authenticated sockets."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from hpckernel.provisioner import LoginError
from tests.cluster.fixtures import testbed_env
from tests.intruder import as_intruder
from tests.kernel.harness import Kernel, ended

pytestmark = [pytest.mark.cluster, pytest.mark.xdist_group("cluster")]

@pytest.fixture(autouse=True)
def login_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = testbed_env()
    # Only the login node knows the cluster: no Slurm configuration on this side.
    monkeypatch.delenv("SLURM_CONF", raising=False)
    return env


def ssh_config(tmp: Path, env: dict[str, str], known_hosts: str | None = None,
               key: str | None = None, host: str | None = None) -> Path:
    path = tmp / "ssh_config"
    path.write_text(
        "Host testlogin\n"
        f"  HostName {host or env['HPCKERNEL_TEST_SSH_HOST']}\n"
        f"  Port {env['HPCKERNEL_TEST_SSH_PORT']}\n"
        f"  User {env['HPCKERNEL_TEST_SSH_USER']}\n"
        f"  IdentityFile {key or env['HPCKERNEL_TEST_SSH_KEY']}\n"
        f"  UserKnownHostsFile {known_hosts or env['HPCKERNEL_TEST_SSH_KNOWN_HOSTS']}\n"
        "  IdentitiesOnly yes\n")
    return path


def settings(tmp: Path, config: Path, **extra: Any) -> dict[str, Any]:
    return {"partition": "debug", "nodes": 2, "ntasks_per_node": 1, "time": "00:10:00",
            "login": "testlogin", "ssh_args": ["-F", str(config)], "poll_interval": 1.0,
            "connect_timeout": 5, **extra}


def wait_until(predicate: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def accepted_logins() -> list[str]:
    """sshd's "Accepted publickey for USER from IP port PORT" lines so far."""
    log = Path(os.environ.get("HPCKERNEL_TESTBED", "/tmp/hpckernel-testbed")) / "log/sshd.log"
    return [line for line in log.read_text().splitlines() if "Accepted publickey" in line]


def client_port(master: psutil.Process, sshd_port: int) -> int:
    """The local port of the SSH master's connection to sshd."""
    return next(c.laddr.port for c in master.net_connections("tcp")
                if c.raddr and c.raddr.port == sshd_port)


def ssh_masters() -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["cmdline"])
            if p.info["cmdline"] and p.info["cmdline"][0] == "ssh" and "-M" in p.info["cmdline"]]


def queued(job_id: str, env: dict[str, str]) -> bool:
    out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%i"], capture_output=True,
                         text=True, env={**os.environ, **env}).stdout
    return job_id in out.split()


@pytest.fixture
def login_kernel(tmp_path: Path, login_env: dict[str, str]) -> Iterator[Kernel]:
    before = len(accepted_logins())
    kernel = Kernel(tmp_path, slurm=settings(tmp_path, ssh_config(tmp_path, login_env)))
    kernel.logins = accepted_logins()[before:]  # type: ignore[attr-defined]
    provisioner = kernel.km.provisioner
    job_id, master = provisioner.job_id, provisioner.ssh.master  # type: ignore[union-attr]
    yield kernel
    kernel.shutdown()
    assert not queued(job_id, login_env), "the job outlived the kernel"
    assert provisioner.ssh is None, "the SSH connection was not closed"
    assert ended(master.pid), "the SSH master lives on"


def test_kernel_through_the_login_node(login_kernel: Kernel, login_env: dict[str, str]
                                       ) -> None:
    result = login_kernel.ok("import os\nprint(rank, os.environ['SLURMD_NODENAME'])")
    assert result.text() == "[stdout:0] 0 n1\n[stdout:1] 1 n2\n"
    # Every command went through the master: one login while the kernel started, the
    # master's own (cluster tests run one at a time, so no other test's ssh logs in).
    master = psutil.Process(login_kernel.km.provisioner.ssh.master.pid)  # type: ignore
    logins = login_kernel.logins  # type: ignore[attr-defined]
    port = client_port(master, int(login_env["HPCKERNEL_TEST_SSH_PORT"]))
    assert len(logins) == 1 and f" port {port} " in logins[0], logins
    info = login_kernel.km.get_connection_info()
    assert info["ip"] == "127.0.0.1"
    master = login_kernel.km.provisioner.ssh.master  # type: ignore[union-attr]
    listening = {c.laddr.ip for c in psutil.Process(master.pid).net_connections("tcp")
                 if c.status == psutil.CONN_LISTEN}
    assert listening == {"127.0.0.1"}, "a tunnel listens beyond loopback"
    ports = {c.laddr.port for c in psutil.Process(master.pid).net_connections("tcp")
             if c.status == psutil.CONN_LISTEN}
    assert {info[p] for p in ("shell_port", "iopub_port", "stdin_port", "control_port",
                              "hb_port")} <= ports


def test_tunnel_loss_is_repaired_and_the_session_survives(login_kernel: Kernel) -> None:
    login_kernel.ok("kept = 'namespace intact'")
    provisioner = login_kernel.km.provisioner
    old = provisioner.ssh.master  # type: ignore[union-attr]
    old.kill()
    wait_until(lambda: not provisioner.ssh.alive, 10)  # type: ignore[union-attr]
    assert login_kernel.km.is_alive()  # the manager's poll rebuilds master and tunnels
    assert provisioner.ssh.master.pid != old.pid  # type: ignore[union-attr]
    result = login_kernel.ok("print(kept)", timeout=60)
    assert result.text() == "[stdout:0-1] namespace intact\n"


def test_a_tunnel_port_taken_meanwhile_stops_the_kernel_loudly(
        login_kernel: Kernel, caplog: pytest.LogCaptureFixture) -> None:
    """Between a lost SSH master and its rebuild, another local process binds one of the
    tunnel's ports: clients must not be sent there, so the kernel is declared dead."""
    provisioner = login_kernel.km.provisioner
    port = login_kernel.km.get_connection_info()["shell_port"]
    provisioner.ssh.master.kill()  # type: ignore[union-attr]
    wait_until(lambda: not provisioner.ssh.alive, 10)  # type: ignore[union-attr]
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAIT
    try:
        wait_until(lambda: _try_bind(squatter, port), 10)
        squatter.listen()
        with caplog.at_level("ERROR"):
            assert not login_kernel.km.is_alive()
        assert f"local port {port}" in caplog.text and "is now held by" in caplog.text
    finally:
        squatter.close()


def _try_bind(sock: socket.socket, port: int) -> bool:
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        return False
    return True


@pytest.mark.parametrize("case", ["host", "key", "hostkey", "ssh"])
def test_login_failures_are_clear_and_leave_nothing(
        tmp_path: Path, login_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
        case: str) -> None:
    config = ssh_config(tmp_path, login_env)
    expect = {"host": "does not resolve", "key": "refused the login",
              "hostkey": "host key of testlogin is unknown or has changed",
              "ssh": "`ssh` not found"}[case]
    if case == "host":
        config = ssh_config(tmp_path, login_env, host="no-such-host.invalid")
    elif case == "key":
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                        str(tmp_path / "stranger")], check=True)
        config = ssh_config(tmp_path, login_env, key=str(tmp_path / "stranger"))
    elif case == "hostkey":
        (tmp_path / "empty_known_hosts").write_text("")
        config = ssh_config(tmp_path, login_env, known_hosts=str(tmp_path / "empty_known_hosts"))
    else:
        monkeypatch.setenv("PATH", str(Path(sys.executable).parent))
    masters = {p.pid for p in ssh_masters()}
    t0 = time.monotonic()
    with pytest.raises(LoginError) as failure:
        Kernel(tmp_path, slurm=settings(tmp_path, config))
    assert expect in str(failure.value)
    assert time.monotonic() - t0 < 30
    assert {p.pid for p in ssh_masters()} <= masters, "a master connection was left behind"


def _secrets(kernel: Kernel) -> list[str]:
    info = kernel.km.get_connection_info()
    return [v.decode() if isinstance(v, bytes) else str(v)
            for v in (info["key"], info["curve_secretkey"])]


def test_secrets_never_on_command_lines_or_in_environments(login_kernel: Kernel) -> None:
    secrets = _secrets(login_kernel)
    scanned = 0
    for proc in psutil.process_iter(["cmdline", "environ", "name"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        assert not any(s in cmdline for s in secrets), f"secret on the command line of {proc}"
        if any(w in cmdline for w in ("hpckernel", "srun", "ssh", "sbatch", "slurmstepd")):
            scanned += 1
            environ = " ".join(f"{k}={v}" for k, v in (proc.info["environ"] or {}).items())
            assert not any(s in environ for s in secrets), f"secret in the environment of {proc}"
    assert scanned >= 4  # hub, ranks, srun, ssh master at least


def test_files_are_private_and_sockets_bind_narrowly(login_kernel: Kernel) -> None:
    job_dir = str(login_kernel.km.provisioner.job_dir)  # type: ignore[union-attr]
    assert oct(os.stat(job_dir).st_mode & 0o777) == "0o700"
    for name in ("connection.json",):
        assert oct(os.stat(f"{job_dir}/{name}").st_mode & 0o777) == "0o600"
    plane = next(Path(job_dir).glob("hpckernel-*/plane.json"))
    assert oct(plane.stat().st_mode & 0o777) == "0o600"
    hub_pid = int(Path(job_dir, "hub.ready").read_text())
    # Our processes only: srun listens on every interface for its own step I/O, as Slurm
    # always does (a site limits that with SrunPortRange and its firewall).
    ours = [psutil.Process(pid) for pid in (hub_pid, *login_kernel.rank_pids())]
    for proc in ours:
        for conn in proc.net_connections("inet"):
            if conn.status == psutil.CONN_LISTEN:
                assert conn.laddr.ip not in ("0.0.0.0", "::"), f"{proc} listens everywhere"


def test_another_user_can_neither_read_nor_run_code(login_kernel: Kernel, intruder: str,
                                                     intruder_site: str,
                                                     tmp_path: Path) -> None:
    job_dir = str(login_kernel.km.provisioner.job_dir)  # type: ignore[union-attr]
    denied = subprocess.run(["/usr/sbin/runuser", "-u", intruder, "--", "cat",
                             f"{job_dir}/connection.json"], capture_output=True, text=True)
    assert denied.returncode != 0 and "Permission denied" in denied.stderr
    info = json.loads(Path(job_dir, "connection.json").read_text())
    marker = tmp_path / "pwned"
    tmp_path.chmod(0o777)
    code = f"""
import json, uuid, zmq, hmac, hashlib, time
ctx = zmq.Context()
results = []
for curve in (False, True):
    s = ctx.socket(zmq.DEALER)
    s.linger = 0
    if curve:  # a CurveZMQ client with a made-up server key
        pub, sec = zmq.curve_keypair()
        s.curve_serverkey, s.curve_publickey, s.curve_secretkey = pub, pub, sec
    s.connect("tcp://{info['ip']}:{info['shell_port']}")
    header = {{"msg_id": uuid.uuid4().hex, "username": "x", "session": "x",
              "msg_type": "execute_request", "version": "5.3", "date": ""}}
    parts = [json.dumps(p).encode() for p in (header, {{}}, {{}},
             {{"code": "open({str(marker)!r}, 'w').write('x')", "silent": False}})]
    sig = hmac.new(b"guessed-key", b"".join(parts), hashlib.sha256).hexdigest().encode()
    s.send_multipart([b"<IDS|MSG>", sig, *parts])
    results.append(bool(s.poll(3000)))
print(json.dumps(results))
"""
    attack = as_intruder(intruder, code, intruder_site)
    assert attack.returncode == 0, attack.stderr
    assert json.loads(attack.stdout) == [False, False], "the kernel answered an intruder"
    assert not marker.exists(), "an intruder ran code in the kernel"
    assert login_kernel.ok("print('still serving')").text() == "[stdout:0-1] still serving\n"


def test_plane_rejects_unknown_peers(login_kernel: Kernel, intruder: str,
                                     intruder_site: str) -> None:
    job_dir = str(login_kernel.km.provisioner.job_dir)  # type: ignore[union-attr]
    plane = json.loads(next(Path(job_dir).glob("hpckernel-*/plane.json")).read_text())
    pids_before = login_kernel.ok("%ranks").text()
    code = f"""
import json, zmq, os
ctx = zmq.Context()
s = ctx.socket(zmq.DEALER)
s.linger = 0
pub, sec = zmq.curve_keypair()  # not the ranks' key
s.curve_serverkey = {plane['server_public']!r}.encode()
s.curve_publickey, s.curve_secretkey = pub, sec
s.setsockopt(zmq.IDENTITY, b"0")
s.connect({plane['tcp_url']!r})
header = {{"rank": 0, "size": 2, "pid": os.getpid(), "host": "intruder", "python": "",
          "mpi": "", "error": None}}
s.send_multipart([b"register", json.dumps(header).encode(), b""])
print(json.dumps(bool(s.poll(2000))))
"""
    attack = as_intruder(intruder, code, intruder_site)
    assert attack.returncode == 0, attack.stderr
    assert json.loads(attack.stdout) is False
    after = login_kernel.ok("%ranks").text()
    assert "intruder" not in after
    assert [line.split()[:4] for line in after.splitlines()[2:]] == [
        line.split()[:4] for line in pids_before.splitlines()[2:]]  # same ranks, same pids
