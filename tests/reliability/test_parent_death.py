"""Ranks and node agents die with the ``rank.sh`` that started them, also when it died
before they could ask Linux for it (``hpckernel/deathsig.py``): a job cancelled while its
ranks start once left a node agent running for 30 s, holding the Slurm step open."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import psutil

CHILD = textwrap.dedent("""\
    import os, sys, time
    # Python starting slowly: the launcher is gone before this process asks.
    while os.getppid() == int(os.environ["HPCKERNEL_PARENT_PID"]):
        time.sleep(0.01)
    from hpckernel.deathsig import die_with_parent
    die_with_parent()
    print("still here", flush=True)
    time.sleep(60)
""")


def test_a_process_whose_launcher_died_before_it_asked_exits_at_once() -> None:
    # As rank.sh starts it; the shell then ends at once (scancel's SIGTERM, say).
    shell = subprocess.run(
        ["bash", "-c", 'HPCKERNEL_PARENT_PID=$$ "$0" -c "$1" > /dev/null 2>&1 & echo $!',
         sys.executable, CHILD], capture_output=True, text=True, check=True, timeout=30)
    child = psutil.Process(int(shell.stdout))
    try:
        child.wait(timeout=30)  # without the check: 60 s
    finally:
        if child.is_running():
            child.kill()


def test_a_process_whose_launcher_lives_goes_on_and_its_children_are_not_told() -> None:
    code = ("import os\nfrom hpckernel.deathsig import PARENT_ENV, die_with_parent\n"
            "die_with_parent()\nprint('asked', PARENT_ENV in os.environ)")
    out = subprocess.run(["bash", "-c", 'HPCKERNEL_PARENT_PID=$$ "$0" -c "$1"',
                          sys.executable, code], capture_output=True, text=True,
                         check=True, timeout=30).stdout
    assert out == "asked False\n"
