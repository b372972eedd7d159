"""hpckernel.slurm.runner.LocalRunner with real processes (no Slurm needed)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from hpckernel.slurm import LocalRunner, Slurm, SlurmNotFoundError, SlurmTimeoutError


def test_output_input_and_status() -> None:
    res = asyncio.run(LocalRunner().run(["sh", "-c", "cat; echo oops >&2; exit 4"],
                                        input=b"hello", timeout=10))
    assert (res.returncode, res.stdout, res.stderr, res.ok) == (4, "hello", "oops\n", False)
    assert res.argv == ("sh", "-c", "cat; echo oops >&2; exit 4")


def test_env_is_laid_over_ours() -> None:
    runner = LocalRunner({"HPCK_TEST_VALUE": "a b"})
    res = asyncio.run(runner.run(["sh", "-c", 'echo "$HPCK_TEST_VALUE:$HOME"'], timeout=10))
    assert res.stdout == f"a b:{os.environ['HOME']}\n"


def test_missing_program_names_the_fix(tmp_path: Path) -> None:
    slurm = Slurm(LocalRunner({"PATH": str(tmp_path)}))
    with pytest.raises(SlurmNotFoundError) as caught:
        asyncio.run(slurm.submit("#!/bin/sh\ntrue\n"))
    assert str(caught.value) == (
        "sbatch not found on PATH: is Slurm installed / is this a login node?")


def _gone(pid_file: Path) -> bool:
    pid = int(pid_file.read_text())
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except FileNotFoundError:
        return True


def test_timeout_kills_the_command(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    began = time.monotonic()
    with pytest.raises(SlurmTimeoutError, match=r"did not finish within 0\.5 s"):
        asyncio.run(LocalRunner().run(
            ["sh", "-c", f"echo $$ > {pid_file}; exec sleep 30"], timeout=0.5))
    assert time.monotonic() - began < 5
    assert _gone(pid_file)


def test_cancellation_kills_the_command(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"

    async def main() -> None:
        task = asyncio.create_task(LocalRunner().run(
            ["sh", "-c", f"echo $$ > {pid_file}; exec sleep 30"], timeout=60))
        for _ in range(200):  # until the shell has written its pid
            if await asyncio.to_thread(lambda: pid_file.exists() and pid_file.read_text()):
                break
            await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert _gone(pid_file)
