"""Function steps: a cloudpickled call, run inside a Slurm job, its result read back.

The notebook side pickles `(function, args, kwargs)` with `dump_call` when the step is
defined (so an unpicklable function fails at once, not in the queue). The job runs

    python -m hpckernel.workflow.call CALL.pkl RESULT_PREFIX

once in the batch shell or, under `srun`, once per rank; each rank writes
`RESULT_PREFIX.<job id>.<rank>.pkl` holding `{"ok": True, "value": ...}` or the exception
and its formatted traceback, and a rank whose call raised exits 1 so the job FAILS.
`read_results` is what `Workflow.result()` calls. This module imports only the standard
library and cloudpickle, so a rank starts fast.
"""

from __future__ import annotations

import os
import socket
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypedDict

import cloudpickle


class Outcome(TypedDict, total=False):
    """What one rank of a function step's job wrote: its value, or the exception and its
    traceback (``error`` None: the rank wrote nothing, or the exception would not pickle)."""

    ok: bool
    rank: int
    host: str
    value: object
    error: BaseException | None
    traceback: str


def dump_call(fn: Callable[..., object], args: Sequence[object],
              kwargs: Mapping[str, object]) -> bytes:
    """Pickle a call; raises TypeError/PicklingError naming what cannot be pickled."""
    if not callable(fn):
        raise TypeError(f"{fn!r} is not callable")
    return cloudpickle.dumps((fn, tuple(args), dict(kwargs)))


def label(fn: Callable[..., object]) -> str:
    """"module.qualname" of a callable, for people reading the workflow file."""
    module = getattr(fn, "__module__", None) or "?"
    return f"{module}.{getattr(fn, '__qualname__', repr(fn))}"


def result_path(prefix: Path, job_id: str, rank: int) -> Path:
    """Where rank ``rank`` of job ``job_id`` writes its outcome."""
    return prefix.with_name(f"{prefix.name}.{job_id}.{rank}.pkl")


def read_results(prefix: Path, job_id: str, ranks: int) -> list[Outcome]:
    """The outcome of each rank, in rank order; a rank that wrote nothing (killed, out of
    memory, walltime) gets {"ok": False, "error": None, "traceback": <what happened>}."""
    outcomes: list[Outcome] = []
    for rank in range(ranks):
        path = result_path(prefix, job_id, rank)
        try:
            outcomes.append(cloudpickle.loads(path.read_bytes()))
        except FileNotFoundError:
            outcomes.append({"ok": False, "error": None, "rank": rank, "host": "?",
                             "traceback": f"rank {rank} wrote no result ({path} is missing): "
                                          "it was killed or never started; see wf.logs()"})
    return outcomes


def _write(path: Path, outcome: Outcome) -> None:
    try:
        data = cloudpickle.dumps(outcome)
    except Exception as err:  # the value or the exception cannot be pickled
        data = cloudpickle.dumps({
            "ok": False, "error": None, "rank": outcome["rank"], "host": outcome["host"],
            "traceback": (outcome.get("traceback") or "")
            + f"the {'result' if outcome['ok'] else 'exception'} cannot be pickled: {err!r}",
        })
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)  # a reader never sees half a file


def main(argv: Sequence[str]) -> int:
    """``python -m hpckernel.workflow.call CALL.pkl RESULT_PREFIX``, in the step's job: 1
    if the call raised."""
    if len(argv) != 2:
        print("usage: python -m hpckernel.workflow.call CALL.pkl RESULT_PREFIX", file=sys.stderr)
        return 2
    call, prefix = Path(argv[0]), Path(argv[1])
    job_id = os.environ.get("SLURM_JOB_ID", "local")
    rank = int(os.environ.get("SLURM_PROCID", "0"))
    host = socket.gethostname()
    try:
        fn, args, kwargs = cloudpickle.loads(call.read_bytes())
        value = fn(*args, **kwargs)
    except BaseException as err:
        text = traceback.format_exc()
        print(text, file=sys.stderr, end="")
        _write(result_path(prefix, job_id, rank),
               {"rank": rank, "host": host, "ok": False, "error": err, "traceback": text})
        return 1
    _write(result_path(prefix, job_id, rank),
           {"rank": rank, "host": host, "ok": True, "value": value})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
