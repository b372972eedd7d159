"""Paths and configuration files of the virtual Slurm test bed.

Used by `tests/cluster/testbed.py` (which starts the daemons) and by `tests/cluster/fixtures.py`
(which only needs the paths). Standard library only: it runs before the project's venv exists.

Everything lives under one state directory (default `/tmp/hpckernel-testbed`, overridable with
`HPCKERNEL_TESTBED`), so several checkouts never share files and `stop` knows what it owns.
"""

from __future__ import annotations

import os
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

DEFAULT_STATE = "/tmp/hpckernel-testbed"
NODES = ("n1", "n2", "n3")
SLURMCTLD_PORT = 16817
SLURMDBD_PORT = 16819
SLURMD_PORTS = "17001-17003"
MARIADB_PORT = 13306
SSH_PORT = 2222
SSH_HOST = "127.0.0.1"
SSH_USER = "root"
# Throw-away password of a database reachable only from 127.0.0.1 while the test bed runs.
DB_PASSWORD = "hpckernel-testbed"


def state_dir() -> Path:
    """The test bed's state directory: `$HPCKERNEL_TESTBED` or `/tmp/hpckernel-testbed`."""
    return Path(os.environ.get("HPCKERNEL_TESTBED") or DEFAULT_STATE).absolute()


@dataclass(frozen=True)
class Paths:
    """Every file the test bed writes, derived from the state directory."""

    root: Path

    @property
    def slurm_conf(self) -> Path:
        return self.root / "etc" / "slurm.conf"

    @property
    def slurmdbd_conf(self) -> Path:
        # slurmdbd looks for slurmdbd.conf beside $SLURM_CONF.
        return self.root / "etc" / "slurmdbd.conf"

    @property
    def munge_dir(self) -> Path:
        return self.root / "munge"

    @property
    def munge_socket(self) -> Path:
        return self.munge_dir / "munge.socket"

    @property
    def mysql_dir(self) -> Path:
        return self.root / "mysql"

    @property
    def mysql_socket(self) -> Path:
        return self.mysql_dir / "mysqld.sock"

    @property
    def ssh_dir(self) -> Path:
        return self.root / "ssh"

    @property
    def ssh_client_key(self) -> Path:
        return self.ssh_dir / "id_ed25519"

    @property
    def ssh_host_key(self) -> Path:
        return self.ssh_dir / "ssh_host_ed25519_key"

    @property
    def known_hosts(self) -> Path:
        return self.ssh_dir / "known_hosts"

    @property
    def sshd_config(self) -> Path:
        return self.ssh_dir / "sshd_config"

    @property
    def env_sh(self) -> Path:
        return self.root / "env.sh"

    def pid_file(self, daemon: str) -> Path:
        if daemon == "mariadbd":
            return self.mysql_dir / "mysqld.pid"
        if daemon == "munged":
            return self.munge_dir / "munged.pid"
        return self.root / "run" / f"{daemon}.pid"

    def log_file(self, daemon: str) -> Path:
        if daemon == "mariadbd":
            return self.mysql_dir / "mysqld.log"
        return self.root / "log" / f"{daemon}.log"


def hostname() -> str:
    """The name slurmctld must find in `SlurmctldHost` (what `hostname -s` would print)."""
    return Path("/proc/sys/kernel/hostname").read_text().strip()


def slurm_bin_dir() -> str:
    """Directory holding sbatch, so that commands run over SSH find the Slurm CLIs."""
    sbatch = shutil.which("sbatch")
    return str(Path(sbatch).parent) if sbatch else "/usr/bin"


def slurm_conf(p: Paths) -> str:
    host = hostname()
    nodes = f"n[1-{len(NODES)}]"
    return f"""\
# Virtual 3-node cluster for hpckernel's tests: three slurmd on one host (tests/cluster).
ClusterName=local
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket={p.munge_socket}
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=pmi2
SlurmctldPort={SLURMCTLD_PORT}
StateSaveLocation={p.root}/slurm/state
SlurmdSpoolDir={p.root}/slurm/spool/%n
# One temporary directory per node: Slurm's PMIx plugin (srun --mpi=pmix) makes
# TmpFS/spmix_appdir_<uid>_<job>.<step> on every node of a step, which the three slurmd of
# one host would otherwise share (the second node's step launch fails with EEXIST).
TmpFS={p.root}/slurm/tmp/%n
SlurmctldPidFile={p.pid_file("slurmctld")}
SlurmdPidFile={p.root}/run/slurmd-%n.pid
SlurmctldLogFile={p.log_file("slurmctld")}
SlurmdLogFile={p.root}/log/slurmd-%n.log
MailProg=/bin/true
# Nodes set DOWN by a test (or by a stopped slurmd) rejoin when their slurmd registers again.
ReturnToService=2
# Short enough for node-crash tests; SIGTERM->SIGKILL delay short so cancels end quickly.
SlurmdTimeout=20
KillWait=5
# Ended jobs stay visible to `scontrol show job` for 5 minutes (the default).
MinJobAge=300
# Reject over-limit requests at submission, so tests see Slurm's error message.
EnforcePartLimits=ALL
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort={SLURMDBD_PORT}
# Talking to slurmdbd does not use AuthInfo: this names the munge socket for that link.
AccountingStoragePass={p.munge_socket}
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
NodeName={nodes} NodeHostname={host} NodeAddr=127.0.0.1 Port={SLURMD_PORTS} CPUs=2 \
RealMemory=4000 State=UNKNOWN
PartitionName=debug Nodes={nodes} Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
PartitionName=short Nodes={nodes} MaxTime=5 State=UP
"""


def slurmdbd_conf(p: Paths) -> str:
    return f"""\
AuthType=auth/munge
AuthInfo=socket={p.munge_socket}
DbdHost={hostname()}
DbdAddr=127.0.0.1
DbdPort={SLURMDBD_PORT}
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={MARIADB_PORT}
StorageUser=slurm
StoragePass={DB_PASSWORD}
StorageLoc=slurm_acct_db
LogFile={p.log_file("slurmdbd")}
PidFile={p.pid_file("slurmdbd")}
"""


def sshd_config(p: Paths) -> str:
    path = f"{slurm_bin_dir()}:/usr/local/bin:/usr/bin:/bin"
    return f"""\
# Test-only login node for hpckernel (tests/cluster): loopback, throw-away keys.
ListenAddress {SSH_HOST}
Port {SSH_PORT}
HostKey {p.ssh_host_key}
PidFile {p.pid_file("sshd")}
AuthorizedKeysFile {p.ssh_dir}/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
# The state directory sits under world-writable /tmp, which StrictModes would refuse.
StrictModes no
AllowTcpForwarding yes
Subsystem sftp internal-sftp
# What /etc/slurm/slurm.conf and the login shell's PATH give on a real login node.
SetEnv SLURM_CONF={p.slurm_conf} PATH={path}
"""


def mariadb_setup_sql() -> str:
    users = ("'slurm'@'127.0.0.1'", "'slurm'@'localhost'")
    lines = ["CREATE DATABASE IF NOT EXISTS slurm_acct_db;"]
    for user in users:
        lines.append(f"CREATE USER IF NOT EXISTS {user} IDENTIFIED BY '{DB_PASSWORD}';")
        lines.append(f"GRANT ALL ON slurm_acct_db.* TO {user};")
    return "\n".join(lines) + "\n"


def env_vars(p: Paths) -> dict[str, str]:
    """What clients of the test bed need: Slurm CLIs and the SSH login node."""
    return {
        "HPCKERNEL_TESTBED": str(p.root),
        "SLURM_CONF": str(p.slurm_conf),
        "HPCKERNEL_TEST_SSH_HOST": SSH_HOST,
        "HPCKERNEL_TEST_SSH_PORT": str(SSH_PORT),
        "HPCKERNEL_TEST_SSH_USER": SSH_USER,
        "HPCKERNEL_TEST_SSH_KEY": str(p.ssh_client_key),
        "HPCKERNEL_TEST_SSH_KNOWN_HOSTS": str(p.known_hosts),
    }


def env_sh(p: Paths) -> str:
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env_vars(p).items())
