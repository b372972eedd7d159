"""Where the kernel's keys are written: never through a planted file or link, never into a
directory another user could swap (job directories here and on the login node)."""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
from pathlib import Path

import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

from hpckernel.kernelspec import write_kernel_spec
from hpckernel.plane.private import UnsafeDirectoryError, make_private_dir, write_private
from hpckernel.provisioner.jobdir import RemoteJobDir
from hpckernel.provisioner.ssh import SSHConnection
from tests.cluster.fixtures import testbed_env
from tests.intruder import INTRUDER
from tests.slurm.test_login import ssh_config


def test_secret_files_never_go_through_a_planted_file_or_link(tmp_path: Path) -> None:
    job = tmp_path / "job"
    make_private_dir(job)
    stolen = tmp_path / "stolen"
    stolen.write_text("")
    (job / "hub-start.json").symlink_to(stolen)
    planted = job / "connection.json"
    planted.write_text("")
    planted.chmod(0o666)
    for name in ("hub-start.json", "connection.json"):
        write_private(job / name, "the key")
        st = os.lstat(job / name)
        assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
        assert (job / name).read_text() == "the key"
    assert stolen.read_text() == ""
    assert sorted(os.listdir(job)) == ["connection.json", "hub-start.json"]  # no temp files


def _start(tmp_path: Path, job_root: Path) -> None:
    """Start a "Slurm MPI" kernel whose job directories go under ``job_root``."""
    write_kernel_spec(tmp_path / "kernels" / "slurm", slurm={
        "nodes": 1, "time": "10", "job_root": str(job_root)})
    km = KernelManager(kernel_name="slurm", kernel_spec_manager=KernelSpecManager(
        kernel_dirs=[str(tmp_path / "kernels")]))
    try:
        km.start_kernel()
    finally:
        km.cleanup_resources()


@pytest.mark.parametrize(("case", "message"), [
    ("group-writable", "is writable by its group (mode 770) without the sticky bit"),
    ("world-writable", "is writable by others (mode 777) without the sticky bit"),
    ("another user's", f"belongs to {INTRUDER}"),
])
@pytest.mark.usefixtures("intruder")
def test_a_job_root_another_user_could_change_is_refused(tmp_path: Path, case: str,
                                                         message: str) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    if case == "another user's":
        shutil.chown(shared, INTRUDER)
        shared.chmod(0o755)
    else:
        shared.chmod(0o770 if case == "group-writable" else 0o777)
    with pytest.raises(UnsafeDirectoryError) as refused:
        _start(tmp_path, shared / "jobs")  # fails before any Slurm command
    assert str(shared) in str(refused.value) and message in str(refused.value)
    assert not (shared / "jobs").exists()  # nothing was made there


@pytest.mark.usefixtures("intruder")
def test_a_job_directory_planted_by_another_user_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp: others may add entries, not replace ours
    make_private_dir(shared / "mine")  # a sticky parent is fine
    theirs = shared / "theirs"
    theirs.mkdir()
    shutil.chown(theirs, INTRUDER)
    with pytest.raises(UnsafeDirectoryError, match=f"{theirs} belongs to {INTRUDER}"):
        make_private_dir(theirs)
    (shared / "link").symlink_to(shared / "mine")
    with pytest.raises(UnsafeDirectoryError, match="is not a directory"):
        make_private_dir(shared / "link")


@pytest.mark.cluster
@pytest.mark.xdist_group("cluster")
def test_job_directories_on_the_login_node_are_checked_too(tmp_path: Path) -> None:
    env = testbed_env()

    async def attempt() -> list[str]:
        connection = SSHConnection("testlogin", ["-F", str(ssh_config(tmp_path, env))], 5)
        await connection.open()
        errors = []
        try:
            for root in ("shared", "private"):
                job_dir = RemoteJobDir(connection, str(tmp_path / root / "jobs" / "k1"))
                try:
                    await job_dir.create()
                    stolen = tmp_path / "stolen"
                    stolen.write_text("")
                    (tmp_path / root / "jobs" / "k1" / "hub-start.json").symlink_to(stolen)
                    await job_dir.write_private("hub-start.json", "the key")
                    assert stolen.read_text() == ""
                except OSError as e:
                    errors.append(str(e))
        finally:
            await connection.close()
        return errors

    (tmp_path / "shared").mkdir(mode=0o770)
    (tmp_path / "shared").chmod(0o770)
    (tmp_path / "private").mkdir(mode=0o700)
    errors = asyncio.run(attempt())
    assert len(errors) == 1, errors
    assert (f"{tmp_path / 'shared'} is writable by other users (mode 770) without the "
            "sticky bit") in errors[0]
    job = tmp_path / "private" / "jobs" / "k1"
    assert stat.S_IMODE(job.stat().st_mode) == 0o700
    assert (job / "hub-start.json").read_text() == "the key"
    assert stat.S_IMODE(os.lstat(job / "hub-start.json").st_mode) == 0o600
