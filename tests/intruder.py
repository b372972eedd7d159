"""A second, real Unix user for the security tests: someone else on the same machine (a
shared login node) who tries to reach the kernel's sockets and files."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

INTRUDER = "hpck-intruder"


@pytest.fixture(scope="module")
def intruder() -> str:
    """The other user's name (created once)."""
    if subprocess.run(["id", INTRUDER], capture_output=True).returncode != 0:
        subprocess.run(["/usr/sbin/useradd", "--no-create-home", "--shell", "/bin/sh", INTRUDER],
                       check=True)
    return INTRUDER


@pytest.fixture(scope="module")
def intruder_site() -> Iterator[str]:
    """pyzmq copied where the other user can read it (our venv may sit in a 0700 dir). Not
    in pytest's temporary directory: another pytest session on the machine removes a
    session's directory once three newer ones exist."""
    import zmq

    site = Path(tempfile.mkdtemp(prefix="hpck-intruder-site-"))
    try:
        src = Path(zmq.__file__).parent
        shutil.copytree(src, site / "zmq")
        libs = src.parent / "pyzmq.libs"
        if libs.exists():
            shutil.copytree(libs, site / "pyzmq.libs")
        for path in [site, *site.rglob("*")]:
            path.chmod(0o755)
        yield str(site)
    finally:
        shutil.rmtree(site, ignore_errors=True)


def as_intruder(user: str, code: str, site: str, timeout: float = 60
                ) -> subprocess.CompletedProcess[str]:
    """Run Python ``code`` as ``user``, with pyzmq from ``site``."""
    return subprocess.run(["/usr/sbin/runuser", "-u", user, "--", "/usr/bin/python3", "-c", code],
                          capture_output=True, text=True, timeout=timeout,
                          env={"PYTHONPATH": site, "PATH": "/usr/bin:/bin"})
