"""ranks.log, where a rank's writes below Python's streams go (fd 1 and 2, MPI's messages),
is capped (RankLauncher.log_limit) and read from its end."""

from __future__ import annotations

import time
from pathlib import Path

import psutil

from hpckernel.hub.rank_log import LOG_NAME, log_tail

from .harness import Kernel, job_dir

LIMIT = 2**20  # RankLauncher.log_limit=1MiB

FLOOD = """\
%%px --targets 0
import os, time
line = b"x" * 4095 + b"\\n"
written = 0
while written < 16 * 2**20:  # 16 times RankLauncher.log_limit
    written += os.write(1, line * 16)
os.write(1, b"rank zero's last words\\n")  # after the flood on the same stream
print(written)
"""


def test_a_flood_on_fd_1_stays_within_the_log_limit_and_the_tail_still_works(
        tmp_path: Path) -> None:
    kernel = Kernel(tmp_path, ranks=2, extra=["--RankLauncher.log_limit=1MiB"])
    try:
        job = job_dir(kernel)
        hub = psutil.Process(kernel.hub_pid)
        rss_before = hub.memory_info().rss
        assert int(kernel.ok(FLOOD, timeout=90).per_rank()[0][0]) >= 16 * LIMIT
        # The launcher passes the rank's output on at its own pace: wait for the last line.
        deadline = time.monotonic() + 60
        while "rank zero's last words" not in log_tail(job, 0, lines=1):
            assert time.monotonic() < deadline, log_tail(job, lines=3)[-300:]
            time.sleep(0.1)
        log, older = job / LOG_NAME, job / (LOG_NAME + ".1")
        assert log.stat().st_size <= LIMIT and older.stat().st_size <= LIMIT
        with open(log) as f:
            assert "ranks.log reached 1.0 MB (RankLauncher.log_limit)" in f.readline()
        assert hub.memory_info().rss - rss_before < 64 * 2**20
        # A rank that dies shows its last lines, read from the end of the capped file.
        died = kernel.run("%%px --targets 0\nimport os\nos.write(2, b'goodbye from zero\\n')\n"
                          "time.sleep(1)\nos.kill(os.getpid(), 9)", timeout=60)
        error = died.of_type("error")[0]["content"]
        assert "goodbye from zero" in "\n".join(error["traceback"])
    finally:
        kernel.shutdown()
