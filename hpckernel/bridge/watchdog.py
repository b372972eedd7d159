"""``python -m hpckernel.bridge.watchdog``: cancels the bridge's job if the bridge dies.

A SIGKILLed bridge cannot clean up after itself. This small process, in a session of its
own (no signal meant for the bridge's group reaches it), reads its orders from the
bridge's pipe: JSON lines ``{"cancel": argv, "kill": [pid…]}`` (``OrphanOrders``; the
latest one counts) and ``"done"``. When the pipe closes without ``"done"``, the bridge is
gone: it runs the cancel command (``scancel``, through the login node if there is one) and
ends the given processes (the SSH master and its tunnels).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the type only: this process starts without the provisioner's imports
    from ..provisioner.kernel_job import OrphanOrders


def main() -> int:
    """Wait for the bridge's pipe to close; carry out the last orders unless it said
    ``"done"``."""
    orders: OrphanOrders = {}
    for line in sys.stdin:
        if line.strip() == '"done"':
            return 0
        try:
            orders = json.loads(line)
        except ValueError:
            continue
    if orders.get("cancel"):
        print(f"hpckernel: the kernel's launcher is gone; cancelling Slurm job "
              f"{orders.get('job_id')}", file=sys.stderr)
        try:
            subprocess.run(orders["cancel"], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            print(f"hpckernel: could not cancel Slurm job {orders.get('job_id')}: {e}; "
                  "cancel it with scancel", file=sys.stderr)
    for pid in orders.get("kill", []):
        try:
            os.kill(int(pid), signal.SIGTERM)
        except (OSError, ValueError):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
