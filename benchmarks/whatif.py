"""``python -m benchmarks.whatif``: measure proposed hpckernel changes before making them.

Copies ``hpckernel/``, ``launcher/`` and ``kernelspec/`` to a temporary directory, applies one
named textual patch (``PATCHES``) to the copy, and runs a few metrics with ``PYTHONPATH``
pointing at the copy, so the hub and its ranks import the patched code. The work tree is not
touched. Variants are measured in turns (round-robin), so that the noise of a shared machine
falls on all of them alike. Writes benchmarks/results/whatif.{json,txt}.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import metrics
from .run import RESULTS
from .systems import HpcKernel, mpich_env

REPO = Path(__file__).resolve().parent.parent
NO_HISTORY = ("RankShell.instance(config=__import__('traitlets.config', fromlist=['Config'])"
              ".Config(HistoryManager={'enabled': False}))")

#: name → [(file, old text, new text)]
PATCHES: dict[str, list[tuple[str, str, str]]] = {
    "baseline": [],
    # Ranks keep no SQLite history (the notebook's history is the hub's).
    "rank-history-off": [("hpckernel/worker/runner.py", "RankShell.instance()", NO_HISTORY)],
    # Two ZMQ I/O threads for the plane, so large replies of several ranks are read in
    # parallel.
    "plane-io-threads": [("hpckernel/hub/rank_pool.py", "zmq.asyncio.Context()",
                          "zmq.asyncio.Context(io_threads=2)")],
}
PATCHES["both"] = PATCHES["rank-history-off"] + PATCHES["plane-io-threads"]


def patched_copy(name: str) -> Path:
    root = Path(tempfile.mkdtemp(prefix=f"hpckernel-{name}-"))
    for part in ("hpckernel", "launcher", "kernelspec"):
        shutil.copytree(REPO / part, root / part,
                        ignore=shutil.ignore_patterns("__pycache__"))
    for file, old, new in PATCHES[name]:
        path = root / file
        text = path.read_text()
        if old not in text:
            raise RuntimeError(f"patch {name!r} no longer applies: {old!r} not in {file}")
        path.write_text(text.replace(old, new))
    return root


def measure(root: Path, n: int, what: list[str], reps: int) -> dict[str, Any]:
    kernel = HpcKernel(n, env={"PYTHONPATH": str(root)}, cwd=str(root))
    out: dict[str, Any] = {}
    try:
        out["M6"] = kernel.start()["first_cell"]
        kernel.setup()
        where = kernel.cell("%%local\nprint(ranks.apply(lambda: __import__('hpckernel')"
                            ".__file__))").text
        if str(root) not in where:
            raise RuntimeError(f"the ranks do not run the patched copy: {where}")
        if "M1" in what:
            out["M1"] = float(np.median([c.seconds for c in metrics.single(kernel, "pass",
                                                                            reps)]))
        if "M5" in what:
            out["M5"] = metrics.arrays({"hpckernel": kernel}, "pull",
                                       max(3, reps // 6))["hpckernel"].get("MB_per_s")
    finally:
        kernel.stop()
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.whatif", description=__doc__)
    parser.add_argument("variants", nargs="*", help=f"of {', '.join(PATCHES)} (default: all)")
    parser.add_argument("--ns", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reps", type=int, default=30)
    args = parser.parse_args(argv)
    args.variants = list(dict.fromkeys(args.variants or PATCHES))
    if set(args.variants) - set(PATCHES):
        parser.error(f"unknown variant; choose from {', '.join(PATCHES)}")
    mpich_env()
    os.environ["IPYTHONDIR"] = tempfile.mkdtemp(prefix="bench-ipython-")
    roots = {name: patched_copy(name) for name in args.variants}
    samples: dict[str, dict[str, dict[str, list[float]]]] = {
        v: {str(n): {} for n in args.ns} for v in args.variants}
    try:
        for r in range(args.rounds):
            for n in args.ns:
                for variant in args.variants:
                    print(f"  round {r + 1} N={n} {variant}", flush=True)
                    got = measure(roots[variant], n, ["M1", "M5"] if n > 1 else ["M1"],
                                  args.reps)
                    for key, value in got.items():
                        if value is not None:
                            samples[variant][str(n)].setdefault(key, []).append(value)
    finally:
        for root in [*roots.values(), Path(os.environ["IPYTHONDIR"])]:
            shutil.rmtree(root, ignore_errors=True)
    lines = [f"what-if, {time.strftime('%Y-%m-%d %H:%M')}: median over {args.rounds} rounds "
             "(M1: median of each round's cells)", "",
             "| variant | N | M1 no-op ms | M5 pull MB/s | M6 start s |", "|---|---|---|---|---|"]
    for variant in args.variants:
        for n in args.ns:
            got = samples[variant][str(n)]

            def med(key: str, scale: float, got: dict[str, list[float]] = got) -> str:
                return f"{np.median(got[key]) * scale:.1f}" if got.get(key) else "—"

            lines.append(f"| {variant} | {n} | {med('M1', 1e3)} | {med('M5', 1)} | "
                         f"{med('M6', 1)} |")
    text = "\n".join(lines)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "whatif.txt").write_text(text + "\n")
    (RESULTS / "whatif.json").write_text(json.dumps(samples, indent=1) + "\n")


if __name__ == "__main__":
    main()
