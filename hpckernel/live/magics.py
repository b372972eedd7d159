"""``%attach JOBID [--login L]`` and ``%detach [JOBID]``, in the hub and (after
``%load_ext hpckernel.widgets``) in a plain IPython kernel. ``--job JOBID`` on ``%%px``,
``%peek``, ``%where``, ``%liveplot`` and ``%dashboard`` is the kernel's own magics'
(``hub/magics.py``, ``widgets/magics.py``): they attach first if need be."""

from __future__ import annotations

import argparse
import shlex
from typing import TYPE_CHECKING

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class

if TYPE_CHECKING:  # the hub registers these magics at start: the client loads on first use
    from .client import LiveJob


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"%{self.prog}: {message}\n{self.format_usage().strip()}")


_ATTACH = _Parser(prog="attach", add_help=False)
_ATTACH.add_argument("job", metavar="JOBID")
_ATTACH.add_argument("--login", default=None, help="the login node (as the Slurm kernel's)")
_ATTACH.add_argument("--job-root", default=None, help="where the job's live files are")
_ATTACH.add_argument("--wait", type=float, default=0.0,
                     help="seconds to wait for a job just submitted to run and be live")


@magics_class
class AttachMagics(Magics):
    """``%attach``/``%detach``."""

    @line_magic
    def attach(self, line: str) -> LiveJob:
        """%attach JOBID [--login L] [--job-root DIR] [--wait S]: attach to a live batch job
        (one that runs ``srun python -m hpckernel.live``); the handle is also
        ``hpckernel.attach(JOBID)``."""
        from .client import attach

        args = _ATTACH.parse_args(shlex.split(line))
        return attach(args.job, args.login, args.job_root, wait=args.wait)

    @line_magic
    def detach(self, line: str) -> None:
        """%detach [JOBID]: leave the job (all attached jobs without one)."""
        from .client import ATTACHED

        chosen = line.split() or list(ATTACHED)
        for job_id in chosen:
            handle = ATTACHED.get(job_id)
            if handle is None:
                raise UsageError(f"%detach: job {job_id} is not attached")
            handle.detach()
