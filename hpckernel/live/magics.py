"""The magics of live batch jobs: ``%attach JOBID [--login L]``, ``%detach [JOBID]``, and
``--job JOBID`` on ``%peek``, ``%where``, ``%liveplot``, ``%%px`` and ``%dashboard``.

In a plain IPython kernel (``%load_ext hpckernel.widgets``) ``AttachMagics`` defines them
all; in the hub, ``%peek`` and friends are the kernel's own, which hand a line with
``--job`` to :func:`job_magic`. Attached jobs are kept per process, by job id; a magic
with ``--job`` attaches first if needed.
"""

from __future__ import annotations

import argparse
import shlex
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class

from ..targets import format_ranks

if TYPE_CHECKING:  # the hub registers these magics at start: the client loads on first use
    from ..widgets.plot import LivePlot
    from .client import LiveJob
    from .panel import JobPanel


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"%{self.prog}: {message}\n{self.format_usage().strip()}")


def _parser(prog: str, names: bool = False) -> _Parser:
    parser = _Parser(prog=prog, add_help=False)
    parser.add_argument("--job", required=prog not in ("attach", "detach"))
    parser.add_argument("--targets", default=None)
    parser.add_argument("--login", default=None)
    parser.add_argument("--timeout", type=float, default=None)
    if names:
        parser.add_argument("names", nargs="+")
    return parser


def job(job_id: str, login: str | None = None) -> LiveJob:
    """The attached job ``job_id`` (attached now if it is not, or if it ended)."""
    from .client import ATTACHED, attach

    handle = ATTACHED.get(job_id)
    if handle is None or handle.ended.is_set():
        handle = attach(job_id, login)
    return handle


def _show(values: dict[int, Any], label: str, name: str = "") -> None:
    from ..hub.merge import group_equal

    for text, ranks in group_equal({r: v if isinstance(v, str) else repr(v)
                                    for r, v in values.items()}):
        prefix = f"{name} =" if name else ""
        sep = "\n" if "\n" in text or not prefix else " "
        print(f"[{label}:{format_ranks(ranks)}] {prefix}{sep}{text}".replace("] \n", "]\n"))


def job_dashboard(line: str) -> JobPanel:
    """``%dashboard --job JOBID`` (the hub's magic hands such a line here)."""
    return job_magic("dashboard", line)  # type: ignore[no-any-return]


def job_liveplot(line: str) -> LivePlot:
    """``%liveplot --job JOBID NAME`` (the hub's magic hands such a line here)."""
    return job_magic("liveplot", line)  # type: ignore[no-any-return]


def job_magic(magic: str, line: str, cell: str | None = None) -> Any:
    """Run ``%magic line`` (``%%px`` with ``cell``) against the live job its ``--job``
    names; called by the hub's magics and by :class:`AttachMagics`."""
    names = magic in ("peek", "liveplot")
    args = _parser(magic, names).parse_args(shlex.split(line))
    handle = job(args.job, args.login)
    if magic == "peek":
        for name in args.names:
            _show(handle.peek(name, args.targets), "peek", name)
        return None
    if magic == "where":
        _show(handle.where(args.targets), "where")
        return None
    if magic == "liveplot":
        if len(args.names) != 1:
            raise UsageError("%liveplot --job JOBID NAME: one published name")
        return handle.liveplot(args.names[0])
    if magic == "px":
        handle.execute(cell or "", args.targets, args.timeout)
        return None
    if magic == "dashboard":
        from .panel import JobPanel

        return JobPanel(handle)
    raise UsageError(f"%{magic} has no --job")


@magics_class
class AttachMagics(Magics):
    """``%attach``/``%detach`` (also in the hub)."""

    @line_magic
    def attach(self, line: str) -> LiveJob:
        """%attach JOBID [--login L]: attach to a running live batch job (started with
        ``srun python -m hpckernel.live``); the handle is also ``hpckernel.attach(JOBID)``."""
        words = shlex.split(line)
        if not words or words[0].startswith("-"):
            raise UsageError("%attach JOBID [--login L]")
        args = _parser("attach").parse_args(words[1:])
        return job(words[0], args.login)

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


@magics_class
class JobOnlyMagics(Magics):
    """``%peek``, ``%where``, ``%liveplot``, ``%%px``, ``%dashboard`` with ``--job`` for a
    plain IPython kernel, which has none of its own."""

    @line_magic
    def peek(self, line: str) -> None:
        """%peek --job JOBID NAME... [--targets SPEC]: variables of the running job."""
        job_magic("peek", line)

    @line_magic
    def where(self, line: str) -> None:
        """%where --job JOBID [--targets SPEC]: each rank's stack now."""
        job_magic("where", line)

    @line_magic
    def liveplot(self, line: str) -> Any:
        """%liveplot --job JOBID NAME: live plot of what the job's ranks publish."""
        return job_magic("liveplot", line)

    @line_magic
    def dashboard(self, line: str) -> Any:
        """%dashboard --job JOBID: the job's ranks (CPU, memory) and state."""
        return job_magic("dashboard", line)

    @cell_magic
    def px(self, line: str, cell: str) -> None:
        """%%px --job JOBID [--targets SPEC] [--timeout S]: run the cell in the job at its
        next safepoint."""
        job_magic("px", line, cell)
