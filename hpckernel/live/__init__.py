"""Live batch jobs: ``srun python -m hpckernel.live SCRIPT [ARGS]`` runs SCRIPT unchanged on
every rank, with what lets a notebook attach to the running job (``hpckernel.attach``):
each rank's I/O thread (stacks, copies of variables, published values), node agents, and
one endpoint for notebooks (``root.py``).

In the program, both optional and no-ops outside ``python -m hpckernel.live``:

- :func:`safepoint` — cells queued by an attached notebook run here, on every targeted rank
  at the same safepoint, so collectives in them work; with nothing queued it returns at once;
- ``hpckernel.publish(NAME, value)`` — kept in a bounded history on the rank until a
  notebook asks for it (``%liveplot --job``).

This module imports nothing beyond the standard library: a program pays for it only when
it runs live.
"""

from .safepoints import safepoint

__all__ = ["safepoint"]
