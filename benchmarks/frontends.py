"""``python -m benchmarks.frontends [--reps N]``: what the argv launcher's relay costs.

The same "Slurm MPI" kernelspec at N=4 (2 nodes x 2 ranks) on the virtual cluster, started
twice side by side: through the Slurm provisioner (jupyter_client, the hub's ports
directly) and through kernel.json's argv (``python -m hpckernel.bridge``: the front end's
ports relayed to the hub by ZMQ proxies), as VS Code or ``jupyter console`` start it.
They take turns, cell by cell (M1: a no-op cell, reply and idle). Prints one table and
writes ``benchmarks/results/frontends.json``. Needs the test bed's cluster
(``eval "$(python3 tests/cluster/testbed.py env)"``). Target: the relay adds ≤ 1 ms.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from .metrics import Group, rotate, stats
from .systems import JupyterKernel

RESULTS = Path(__file__).parent / "results"
SETTINGS = {"partition": "debug", "nodes": 2, "ntasks_per_node": 2, "time": "00:20:00",
            "poll_interval": 5.0}


class SlurmKernel(JupyterKernel):
    """The Slurm kernelspec, with its provisioner (``argv=False``) or as argv only."""

    def __init__(self, n: int, argv: bool) -> None:
        super().__init__(n)
        self.argv = argv
        self.name = "argv+relay" if argv else "provisioner"
        self.spec_dir = Path(tempfile.mkdtemp(prefix="hpckernel-bench-"))

    def _manager(self) -> Any:
        from jupyter_client.kernelspec import KernelSpecManager
        from jupyter_client.manager import KernelManager

        from hpckernel.kernelspec import write_kernel_spec

        path = write_kernel_spec(self.spec_dir / "kernels" / "bench",
                                 slurm={**SETTINGS, "job_root": str(self.spec_dir / "jobs")})
        if self.argv:
            spec = json.loads((path / "kernel.json").read_text())
            del spec["metadata"]["kernel_provisioner"]
            (path / "kernel.json").write_text(json.dumps(spec))
        return KernelManager(kernel_name="bench", kernel_spec_manager=KernelSpecManager(
            kernel_dirs=[str(self.spec_dir / "kernels")]))

    @property
    def kernel_pid(self) -> int:
        # The provisioner's hub runs in the job: count the launcher (argv) or nothing here.
        return int(getattr(self.km.provisioner, "pid", 0) or 0)

    def setup(self) -> None:
        """M1 needs nothing on the ranks."""

    def rank_pids(self) -> list[int]:
        return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.frontends")
    parser.add_argument("--reps", type=int, default=200, help="no-op cells per path")
    args = parser.parse_args(argv)
    group: Group = {}
    try:
        for use_argv in (False, True):
            kernel = SlurmKernel(4, argv=use_argv)
            group[kernel.name] = kernel
            start = kernel.start()
            print(f"{kernel.name}: ready in {start['ready']:.1f} s", flush=True)
        rotate(group, 5, lambda s: s.cell("pass"))  # warm-up
        got, errors = rotate(group, args.reps, lambda s: s.cell("pass"))
    finally:
        for kernel in group.values():
            kernel.stop()
    if errors:
        print(f"failed: {errors}")
        return 1
    result = {name: stats([c.seconds for c in cells]) for name, cells in got.items()}
    added = result["argv+relay"]["median"] - result["provisioner"]["median"]
    print(f"\nM1 (no-op cell) at N=4 on the virtual cluster, {args.reps} cells each, "
          "taking turns")
    print(f"{'path':<14}{'median ms':>11}{'p95 ms':>9}")
    for name, row in result.items():
        print(f"{name:<14}{row['median'] * 1e3:>11.2f}{row['p95'] * 1e3:>9.2f}")
    print(f"added by the relay: {added * 1e3:+.2f} ms per cell (target ≤ 1 ms)")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "frontends.json").write_text(json.dumps(
        {"reps": args.reps, "settings": SETTINGS, "M1": result,
         "added_ms": added * 1e3}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
