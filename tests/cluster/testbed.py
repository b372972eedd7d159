#!/usr/bin/env python3
"""Start, stop and inspect the virtual 3-node Slurm cluster and SSH login node used by the tests.

    python tests/cluster/testbed.py start|stop|status|env

Run as root after `tests/cluster/install.sh`. Standard library only, so it runs before the
project's venv exists. `start` brings up munged, mariadbd, slurmdbd, slurmctld, three
`slurmd -N n1..n3` and an sshd on 127.0.0.1:2222, all under one state directory
(`$HPCKERNEL_TESTBED`, default `/tmp/hpckernel-testbed`), and writes `<state>/env.sh` with
what clients need (`SLURM_CONF`, `HPCKERNEL_TEST_SSH_*`). `stop` cancels every job and ends
every process it started, leaving nothing running. Facts behind the recipe: /work/shared/TESTBED.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import configs
from configs import NODES, SSH_HOST, SSH_PORT, SSH_USER, Paths

log = logging.getLogger("testbed")

# Start order; `stop` goes backwards. Each name is the process's /proc/<pid>/comm too.
DAEMONS = ("munged", "mariadbd", "slurmdbd", "slurmctld", *(f"slurmd-{n}" for n in NODES), "sshd")
START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0


class TestbedError(RuntimeError):
    """A daemon failed to start or a readiness check timed out."""


# ---------------------------------------------------------------- processes


def _comm(daemon: str) -> str:
    return "slurmd" if daemon.startswith("slurmd-") else daemon


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int, comm: str | None = None) -> bool:
    """True if `pid` runs and (when given) is named `comm`, so a recycled pid is not ours."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # Field 3, after the parenthesised name, is the state; Z means already dead.
    name, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :]
    return not rest.startswith("Z") and (comm is None or name == comm[:15])


def daemon_pid(p: Paths, daemon: str) -> int | None:
    pid = _read_pid(p.pid_file(daemon))
    return pid if pid is not None and _alive(pid, _comm(daemon)) else None


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _descendants(pid: int) -> list[int]:
    tree, found, todo = _children(), [], [pid]
    while todo:
        kids = tree.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def _ancestors() -> set[int]:
    """This process and its parents: never ours to kill, even when run inside a job."""
    found, pid = set(), os.getpid()
    while pid > 1 and pid not in found:
        found.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat[stat.rindex(")") + 2 :].split()[1])
    return found


def _stray_slurm_processes(p: Paths) -> list[int]:
    """slurmstepd and job tasks of this test bed, found by the SLURM_CONF they inherited.

    slurmd double-forks slurmstepd, so they are not its descendants; a job's tasks carry
    SLURM_JOB_ID. The caller's own shell (which may have sourced env.sh) is never matched.
    """
    marker = f"SLURM_CONF={p.slurm_conf}".encode()
    mine = _ancestors()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in mine:
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            comm = (entry / "comm").read_text().strip()
        except OSError:
            continue
        is_job = any(e.startswith(b"SLURM_JOB_ID=") for e in environ)
        if marker in environ and (comm == "slurmstepd" or is_job):
            found.append(int(entry.name))
    return found


def _terminate(pids: Sequence[int], what: str, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM, then SIGKILL whatever is still there after `timeout` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
            time.sleep(0.1)
        if not any(_alive(pid) for pid in pids):
            return
        log.warning("%s did not stop on SIGTERM within %.0f s; sending SIGKILL", what, timeout)
    raise TestbedError(f"{what} (pids {list(pids)}) survived SIGKILL")


def _run(argv: Sequence[str], p: Paths, *, input: str | None = None, check: bool = True,
         timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SLURM_CONF": str(p.slurm_conf)}
    res = subprocess.run(list(argv), input=input, capture_output=True, text=True, env=env,
                         timeout=timeout, stdin=None if input is not None else subprocess.DEVNULL)
    if check and res.returncode != 0:
        raise TestbedError(f"`{' '.join(argv)}` failed ({res.returncode}): "
                           f"{(res.stderr or res.stdout).strip()}")
    return res


def _ok(argv: Sequence[str], p: Paths) -> bool:
    try:
        return _run(argv, p, check=False, timeout=10).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return f"({path} does not exist)"
    return "\n".join(f"    {line}" for line in text) or f"({path} is empty)"


def _wait(what: str, ready: Callable[[], bool], logs: Sequence[Path],
          timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            tails = "\n".join(f"  last lines of {f}:\n{_tail(f)}" for f in logs)
            raise TestbedError(f"timed out after {timeout:.0f} s waiting for {what}\n{tails}")
        time.sleep(0.2)


def _daemonize(daemon: str, argv: Sequence[str], p: Paths, ready: Callable[[], bool]) -> None:
    """Run a self-daemonizing program and wait until it is up and `ready()`."""
    out = p.root / "log" / f"{daemon}.out"
    env = {**os.environ, "SLURM_CONF": str(p.slurm_conf)}
    with out.open("ab") as sink:
        # The stdio of every daemon goes to a file: a caller reading our stdout
        # (pytest, CI) must not wait on a pipe held open by a daemon.
        rc = subprocess.run(list(argv), stdin=subprocess.DEVNULL, stdout=sink, stderr=sink,
                            env=env, timeout=60).returncode
    if rc != 0:
        raise TestbedError(f"{daemon} exited with {rc}; last lines of {out}:\n{_tail(out)}")
    _wait(daemon, lambda: daemon_pid(p, daemon) is not None and ready(),
          [p.log_file(daemon), out])


# ---------------------------------------------------------------- start


def _prepare(p: Paths) -> None:
    for d in ("etc", "run", "log", "slurm/state", *(f"slurm/spool/{n}" for n in NODES),
              *(f"slurm/tmp/{n}" for n in NODES)):
        (p.root / d).mkdir(parents=True, exist_ok=True)
    # munged wants its socket directory searchable by all (clients connect to the socket).
    p.munge_dir.mkdir(exist_ok=True)
    p.munge_dir.chmod(0o755)
    p.ssh_dir.mkdir(exist_ok=True)
    p.ssh_dir.chmod(0o700)
    p.slurm_conf.write_text(configs.slurm_conf(p))
    p.slurmdbd_conf.write_text(configs.slurmdbd_conf(p))
    os.chmod(p.slurmdbd_conf, 0o600)  # slurmdbd refuses a readable file holding a password
    p.sshd_config.write_text(configs.sshd_config(p))
    key = p.munge_dir / "munge.key"
    if not key.exists():
        _run(["mungekey", "--create", f"--keyfile={key}"], p)
    for path, comment in ((p.ssh_host_key, "hpckernel-testbed-host"),
                          (p.ssh_client_key, "hpckernel-testbed-client")):
        if not path.exists():
            _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                 p)
    host_pub = Path(f"{p.ssh_host_key}.pub").read_text().split()
    p.known_hosts.write_text(f"[{SSH_HOST}]:{SSH_PORT} {host_pub[0]} {host_pub[1]}\n")
    (p.ssh_dir / "authorized_keys").write_text(Path(f"{p.ssh_client_key}.pub").read_text())


def _start_munged(p: Paths) -> None:
    d = p.munge_dir
    _daemonize("munged", ["munged", f"--socket={p.munge_socket}", f"--key-file={d}/munge.key",
                          f"--pid-file={p.pid_file('munged')}",
                          f"--log-file={p.log_file('munged')}", f"--seed-file={d}/munged.seed"],
               p, p.munge_socket.exists)


def _start_mariadbd(p: Paths) -> None:
    data = p.mysql_dir / "data"
    p.mysql_dir.mkdir(exist_ok=True)
    os.chown(p.mysql_dir, *_mysql_ids())
    if not (data / "mysql").is_dir():
        log.info("creating the accounting database in %s (first start only)", data)
        _run(["mariadb-install-db", "--no-defaults", "--user=mysql", f"--datadir={data}",
              "--auth-root-authentication-method=socket", "--skip-test-db"], p, timeout=120)
    logf = p.log_file("mariadbd")
    argv = ["mariadbd", "--no-defaults", "--user=mysql", f"--datadir={data}",
            f"--socket={p.mysql_socket}", f"--pid-file={p.pid_file('mariadbd')}",
            f"--log-error={logf}", "--bind-address=127.0.0.1",
            f"--port={configs.MARIADB_PORT}", "--skip-name-resolve"]
    with (p.root / "log" / "mariadbd.out").open("ab") as sink:
        # mariadbd does not fork: detach it into its own session so it outlives this script.
        subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=sink, stderr=sink,
                         start_new_session=True)
    client = ["mariadb", "--no-defaults", f"--socket={p.mysql_socket}", "-uroot"]
    _wait("mariadbd", lambda: daemon_pid(p, "mariadbd") is not None
          and _ok([*client, "-e", "SELECT 1"], p), [logf])
    _run(client, p, input=configs.mariadb_setup_sql())


def _mysql_ids() -> tuple[int, int]:
    import pwd

    entry = pwd.getpwnam("mysql")
    return entry.pw_uid, entry.pw_gid


def _start_slurm(p: Paths) -> None:
    _daemonize("slurmdbd", ["slurmdbd"], p,
               lambda: _ok(["sacctmgr", "-n", "-P", "list", "cluster"], p))
    if "local" not in _run(["sacctmgr", "-n", "-P", "list", "cluster", "format=cluster"],
                           p).stdout.split():
        _run(["sacctmgr", "-i", "add", "cluster", "local"], p)
    _daemonize("slurmctld", ["slurmctld", "-f", str(p.slurm_conf)], p,
               lambda: _ok(["scontrol", "ping"], p))
    for node in NODES:
        _daemonize(f"slurmd-{node}", ["slurmd", "-N", node, "-f", str(p.slurm_conf)], p,
                   lambda: True)


def _start_sshd(p: Paths) -> None:
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation dir
    _daemonize("sshd", ["/usr/sbin/sshd", "-f", str(p.sshd_config), "-E", str(p.log_file("sshd"))],
               p, lambda: True)


def ssh_argv(p: Paths, *command: str) -> list[str]:
    return ["ssh", "-p", str(SSH_PORT), "-i", str(p.ssh_client_key), "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={p.known_hosts}",
            f"{SSH_USER}@{SSH_HOST}", *command]


def _node_states(p: Paths) -> dict[str, str]:
    res = _run(["sinfo", "-h", "-N", "-o", "%N %t"], p, check=False, timeout=10)
    return dict(line.split() for line in res.stdout.splitlines() if line.strip())


def _idle_nodes(p: Paths) -> int:
    states = _node_states(p)
    return sum(1 for n in NODES if states.get(n) == "idle")


def _healthy(p: Paths) -> bool:
    """Every daemon up and every node in service; busy nodes are fine (others' jobs)."""
    states = _node_states(p)
    return (all(daemon_pid(p, d) is not None for d in DAEMONS)
            and all(states.get(n, "down").rstrip("*") in ("idle", "mix", "alloc", "comp")
                    for n in NODES)
            and _ok(["sacct", "-n", "-X", "-S", "now"], p)
            and _ok(ssh_argv(p, "squeue", "-h"), p))


def _restart_lost_slurmds(p: Paths) -> bool:
    """If only some slurmd are gone (a node-crash test), start just those: a restart of
    the whole cluster would cancel everyone's jobs. True if that was the only problem."""
    lost = [n for n in NODES if daemon_pid(p, f"slurmd-{n}") is None]
    if not lost or any(daemon_pid(p, d) is None for d in DAEMONS
                       if not d.startswith("slurmd-")):
        return False
    for node in lost:
        log.info("restarting slurmd of %s", node)
        _daemonize(f"slurmd-{node}", ["slurmd", "-N", node, "-f", str(p.slurm_conf)], p,
                   lambda: True)
    _wait(f"{', '.join(lost)} back in service", lambda: _healthy(p),
          [p.root / "log" / f"slurmd-{n}.log" for n in lost])
    return True


def start(p: Paths) -> None:
    if p.env_sh.exists() and _healthy(p):
        log.info("already running (state in %s)", p.root)
        return
    if p.env_sh.exists() and _restart_lost_slurmds(p):
        return
    if any(daemon_pid(p, d) is not None for d in DAEMONS):
        log.info("partly running or unhealthy: restarting")
        stop(p)
    began = time.monotonic()
    p.env_sh.unlink(missing_ok=True)
    _prepare(p)
    _start_munged(p)
    _start_mariadbd(p)
    _start_slurm(p)
    _start_sshd(p)
    nodes_logs = [p.log_file("slurmctld"), *(p.root / "log" / f"slurmd-{n}.log" for n in NODES)]
    _wait(f"{len(NODES)} idle nodes in sinfo", lambda: _idle_nodes(p) == len(NODES), nodes_logs)
    _wait("sacct to answer", lambda: _ok(["sacct", "-n", "-X", "-S", "now"], p),
          [p.log_file("slurmdbd")])
    _wait("ssh to the login node", lambda: _ok(ssh_argv(p, "squeue", "-h"), p),
          [p.log_file("sshd")])
    p.env_sh.write_text(configs.env_sh(p))
    log.info("up in %.1f s; environment in %s", time.monotonic() - began, p.env_sh)


# ---------------------------------------------------------------- stop


def _cancel_all_jobs(p: Paths) -> None:
    if daemon_pid(p, "slurmctld") is None:
        return
    jobs = _run(["squeue", "-h", "-o", "%A"], p, check=False).stdout.split()
    if not jobs:
        return
    log.info("cancelling %d job(s)", len(jobs))
    _run(["scancel", *jobs], p, check=False)
    try:
        _wait("cancelled jobs to leave squeue",
              lambda: not _run(["squeue", "-h", "-o", "%A"], p, check=False).stdout.split(),
              [p.log_file("slurmctld")], timeout=STOP_TIMEOUT + 10)
    except TestbedError as err:
        log.warning("%s; stopping anyway", err)


def stop(p: Paths) -> None:
    p.env_sh.unlink(missing_ok=True)
    _cancel_all_jobs(p)
    for daemon in reversed(DAEMONS):
        pid = daemon_pid(p, daemon)
        if pid is not None:
            # Take its children too (sshd sessions, tunnels), which outlive a killed parent.
            _terminate([pid, *_descendants(pid)], daemon)
    strays = _stray_slurm_processes(p)
    if strays:
        log.warning("ending %d leftover slurmstepd/job process(es)", len(strays))
        _terminate(strays, "leftover slurmstepd/job processes", timeout=5)
    log.info("stopped")


# ---------------------------------------------------------------- status / CLI


def status(p: Paths) -> int:
    running = 0
    for daemon in DAEMONS:
        pid = daemon_pid(p, daemon)
        running += pid is not None
        print(f"{daemon:12} {'running, pid ' + str(pid) if pid else 'stopped'}")
    if daemon_pid(p, "slurmctld") is not None:
        print(_run(["sinfo"], p, check=False).stdout, end="")
    print(f"state: {p.root}; env.sh {'present' if p.env_sh.exists() else 'absent'}")
    return 0 if running == len(DAEMONS) and p.env_sh.exists() else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["start", "stop", "status", "env"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="testbed: %(message)s")
    p = Paths(configs.state_dir())
    if any(c.isspace() for c in str(p.root)):
        log.error("HPCKERNEL_TESTBED=%r: the Slurm configs cannot hold paths with spaces", p.root)
        return 1
    # The daemons live in /usr/sbin, which a non-login root shell may not have on PATH.
    path = os.environ.get("PATH", "").split(":")
    os.environ["PATH"] = ":".join([*path, *(d for d in ("/usr/sbin", "/sbin") if d not in path)])
    if args.command == "env":
        if not p.env_sh.exists():
            log.warning("not running: start it with `python tests/cluster/testbed.py start`")
        print(configs.env_sh(p), end="")
        return 0
    if args.command == "status":
        return status(p)
    if os.geteuid() != 0:
        log.error("must run as root (it starts munged, mariadbd, Slurm daemons and sshd)")
        return 1
    try:
        if args.command == "start":
            start(p)
        else:
            stop(p)
    except (TestbedError, subprocess.TimeoutExpired, OSError) as err:
        log.error("%s failed: %s", args.command, err)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
