"""Test-side view of the virtual Slurm cluster started by `tests/cluster/testbed.py`.

Cluster tests (`@pytest.mark.cluster`, e.g. `tests/slurm/test_slurm_cli.py`) call
`testbed_env()` and run the Slurm CLIs with that environment. A cluster that is not running
is a failure with a message saying how to start it, never a silent skip.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from .configs import Paths, state_dir

NOT_RUNNING = (
    "virtual Slurm cluster is not running: start it with `python tests/cluster/testbed.py start`"
)


def testbed_env() -> dict[str, str]:
    """Variables from `<state>/env.sh`: SLURM_CONF and HPCKERNEL_TEST_SSH_{HOST,PORT,USER,KEY,
    KNOWN_HOSTS}. Merge them into `os.environ` for the commands a test runs.

    Raises RuntimeError if the test bed is not running (env.sh exists only between a
    successful `start` and the next `stop`).
    """
    paths = Paths(state_dir())
    try:
        text = paths.env_sh.read_text()
    except FileNotFoundError:
        raise RuntimeError(f"{NOT_RUNNING} (no {paths.env_sh})") from None
    env: dict[str, str] = {}
    for line in text.splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            key, _, value = words[1].partition("=")
            env[key] = value
    if "SLURM_CONF" not in env:
        raise RuntimeError(f"{NOT_RUNNING} ({paths.env_sh} names no SLURM_CONF)")
    if not _slurmctld_alive(paths):
        raise RuntimeError(f"{NOT_RUNNING} (its slurmctld is gone; env.sh is stale)")
    return env


def _slurmctld_alive(paths: Paths) -> bool:
    try:
        pid = int(paths.pid_file("slurmctld").read_text().split()[0])
        return Path(f"/proc/{pid}/comm").read_text().strip() == "slurmctld"
    except (OSError, ValueError, IndexError):
        return False


# Its name starts with "test": keep pytest from collecting it where tests import it.
testbed_env.__test__ = False  # type: ignore[attr-defined]
