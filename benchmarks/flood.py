"""The hub's memory in a stdout flood (issue 12): N local ranks each write LINES lines of
100 bytes; the hub's RSS sampled every 20 ms (peak), after the flood, and after freed memory
went back to the system (``malloc_trim``), with every rank's output read back from the hub.

    .venv/bin/python -m benchmarks.flood [--ranks 16] [--lines 100000]
        [--memory 16MB 256MB] [--fanin agents direct] [--window 4MB]

Writes ``results/flood.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from .systems import HpcKernel, mpich_env

RESULTS = Path(__file__).parent / "results"
FLOOD = ("import sys\nline = 'x' * 99 + '\\n'\nfor i in range({lines}):\n"
         "    sys.stdout.write(line)")
TRIM = ("%%local\nimport ctypes, gc\nget_ipython().kernel.outputs.sync()\ngc.collect()\n"
        "ctypes.CDLL('libc.so.6').malloc_trim(0)")
KEPT = "%%local\nprint(sum(len(t) for t in _px.stdout))"


def measure(ranks: int, lines: int, memory: str, fanin: str, window: str) -> dict[str, Any]:
    kernel = HpcKernel(ranks, env={"HPCKERNEL_FANIN": fanin},
                       extra=[f"--HubKernel.output_memory={memory}",
                              f"--HubKernel.output_window={window}"])
    result: dict[str, Any] = {"ranks": ranks, "fanin": fanin, "output_memory": memory,
                              "output_window": window,
                              "produced_mb": ranks * lines * 100 / 1e6}
    try:
        kernel.start()
        hub = psutil.Process(kernel.kernel_pid)
        kernel.cell("pass")
        peak = before = hub.memory_info().rss
        stop = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not stop.wait(0.02):
                peak = max(peak, hub.memory_info().rss)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            cell = kernel.cell(FLOOD.format(lines=lines))
        finally:
            stop.set()
            sampler.join()
        after = hub.memory_info().rss
        kernel.cell(TRIM)
        trimmed = hub.memory_info().rss  # what the hub still holds
        kept = kernel.cell(KEPT)
        mb = 2**20
        result.update(status=cell.status, flood_s=round(cell.seconds, 1),
                      rss_before_mb=round(before / mb), rss_peak_mb=round(peak / mb),
                      rss_after_mb=round(after / mb),
                      rss_trimmed_mb=round(trimmed / mb),
                      kept_mb=int(kept.text.strip() or 0) / 1e6)
    except Exception as e:
        result["error"] = f"{type(e).__name__}: {e}"
    finally:
        kernel.stop()
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.flood", description=__doc__)
    parser.add_argument("--ranks", type=int, default=16)
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--memory", nargs="+", default=["16MB", "256MB"])
    parser.add_argument("--fanin", nargs="+", default=["agents", "direct"])
    parser.add_argument("--window", nargs="+", default=["4MB"],
                        help="HubKernel.output_window (flow control per sender)")
    args = parser.parse_args(argv)
    mpich_env()
    os.environ["IPYTHONDIR"] = tempfile.mkdtemp(prefix="bench-ipython-")
    out = []
    for fanin in args.fanin:
        for memory in args.memory:
            for window in args.window:
                out.append(measure(args.ranks, args.lines, memory, fanin, window))
                print(json.dumps(out[-1]), flush=True)
                time.sleep(1.0)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "flood.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
