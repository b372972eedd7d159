"""Where a cell runs: on the ranks (default), in the hub (``%%local``), or as a hub magic.

Parsing of the magics' options lives here too, so the kernel's ``do_execute`` and the
IPython magics registered in the hub share one definition.
"""

from __future__ import annotations

import argparse
import shlex
from dataclasses import dataclass, field
from typing import Literal

from IPython.core.magic import Magics

from .errors import HubError

#: Where a cell runs: on the ranks, in the hub as plain IPython, or as one of the hub's magics.
RouteKind = Literal["px", "local", "hub"]


@dataclass(frozen=True)
class HubMagics:
    """The names of the magics registered in the hub: a cell that starts with one runs in
    the hub (``%ranks``, ``%%sbatch``), not on the ranks."""

    line: frozenset[str]
    cell: frozenset[str]

    @classmethod
    def of(cls, *classes: type[Magics]) -> HubMagics:
        """The magics that ``classes`` (``@magics_class`` classes) define."""
        line = {name for c in classes for name in c.magics["line"]}
        cell = {name for c in classes for name in c.magics["cell"]} - {"px"}  # ranks' own
        return cls(frozenset(line), frozenset(cell))


class MagicUsageError(HubError, ValueError):
    """Bad options to one of hpckernel's magics."""

    def _render_traceback_(self) -> list[str]:
        return [f"UsageError: {self}"]  # IPython shows this, not the hub's own stack


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise MagicUsageError(f"%{self.prog}: {message}\n{self.format_usage().strip()}")


def _px_parser(prog: str) -> _Parser:
    parser = _Parser(prog=prog, add_help=False, exit_on_error=False)
    parser.add_argument("--targets", "-t", help="ranks to run on: 0, 1,3, 0:4, -1 or all")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--noblock", dest="block", action="store_false", default=None,
                      help="return at once; %%pxresult shows the output")
    mode.add_argument("--block", dest="block", action="store_true", default=None,
                      help="wait for the ranks (the default)")
    return parser


def _name(text: str) -> str:
    if not text.isidentifier():
        raise argparse.ArgumentTypeError(f"{text!r} is not a variable name")
    return text


def _dotted(text: str) -> str:
    if not all(part.isidentifier() for part in text.split(".")):
        raise argparse.ArgumentTypeError(f"{text!r} is not a variable name (x or x.attr)")
    return text


def _job_option(parser: _Parser) -> None:
    parser.add_argument("--job", metavar="JOBID", help="in this live batch job (attached "
                        "now if need be), not on the kernel's own ranks")


def _cell_px_parser() -> _Parser:
    parser = _px_parser("px")
    _job_option(parser)
    parser.add_argument("--in", dest="ins", action="append", type=_name, default=[],
                        metavar="NAME", help="send the hub's NAME to the ranks first")
    parser.add_argument("--scatter", action="store_true",
                        help="split each --in array across the ranks (numpy.array_split)")
    parser.add_argument("--out", dest="outs", action="append", type=_name, default=[],
                        metavar="NAME", help="then gather each rank's NAME into the hub "
                        "as a list")
    parser.add_argument("--concat", action="store_true",
                        help="gather --out arrays as one concatenated array")
    return parser


def _pxconfig_parser() -> _Parser:
    parser = _px_parser("pxconfig")
    parser.add_argument("--debug", metavar="SPEC", help="ranks the debugger stops on: 0, "
                        "2, 0,5, 0:4 or all (default 0)")
    return parser


PX_PARSER = _cell_px_parser()
PXCONFIG_PARSER = _pxconfig_parser()


@dataclass
class PxOptions:
    """The options of a ``%%px`` cell (or ``%pxconfig`` line); None: the default."""

    targets: str | None = None
    block: bool | None = None
    job: str | None = None  # a live batch job's ranks, not the kernel's own
    ins: list[str] = field(default_factory=list)
    outs: list[str] = field(default_factory=list)
    scatter: bool = False
    concat: bool = False
    debug: str | None = None  # %pxconfig --debug


def _parse(line: str, parser: _Parser) -> argparse.Namespace:
    try:
        return parser.parse_args(shlex.split(line))
    except MagicUsageError:
        raise
    except (argparse.ArgumentError, ValueError) as e:  # ValueError: unbalanced quotes
        raise MagicUsageError(f"%{parser.prog}: {e}\n{parser.format_usage().strip()}") from None


def parse_px_options(line: str, parser: _Parser = PX_PARSER) -> PxOptions:
    """The options of a ``%%px`` line (``PXCONFIG_PARSER``: of ``%pxconfig``); a usage
    error names what is wrong."""
    args = _parse(line, parser)
    options = PxOptions(targets=args.targets, block=args.block,
                        debug=getattr(args, "debug", None))
    if parser is PX_PARSER:
        options.job = args.job
        options.ins, options.outs = args.ins, args.outs
        options.scatter, options.concat = args.scatter, args.concat
        if options.scatter and not options.ins:
            parser.error("--scatter splits the --in values: name them with --in NAME")
        if options.concat and not options.outs:
            parser.error("--concat joins the --out values: name them with --out NAME")
        if options.outs and options.block is False:
            parser.error("--out needs the cell's end: with --noblock, gather later with "
                         "ranks.pull('NAME') or %pull NAME")
    return options


def _hub_parser(prog: str, names: str | None, targets: bool = True) -> _Parser:
    parser = _Parser(prog=prog, add_help=False, exit_on_error=False)
    if names is not None:
        parser.add_argument("names", nargs="+", type=_dotted if prog == "peek" else _name,
                            metavar="NAME", help=names)
    if targets:
        parser.add_argument("--targets", "-t", help="ranks: 0, 1,3, 0:4, -1 or all")
    return parser


def _magic_parsers() -> dict[str, _Parser]:
    peek = _hub_parser("peek", "variables (x or x.attr) to read on the running ranks")
    peek.add_argument("--timeout", type=float, default=10.0,
                      help="seconds to wait for each rank's answer")
    _job_option(peek)
    where = _hub_parser("where", None)
    _job_option(where)
    liveplot = _hub_parser("liveplot", "the name the ranks publish (hpckernel.publish)",
                           targets=False)
    _job_option(liveplot)
    dashboard = _hub_parser("dashboard", None, targets=False)
    _job_option(dashboard)
    push = _hub_parser("push", "hub variables to send to the ranks")
    push.add_argument("--scatter", action="store_true",
                      help="split each array across the ranks (numpy.array_split)")
    pull = _hub_parser("pull", "rank variables to gather into the hub, as lists")
    pull.add_argument("--concat", action="store_true",
                      help="concatenate the ranks' arrays into one")
    provenance = _hub_parser("provenance", None, targets=False)
    provenance.add_argument("last", nargs="?", type=int, default=None,
                            help="show only the last N cells")
    provenance.add_argument("--json", action="store_true", help="the full records as JSON")
    pxoutput = _hub_parser("pxoutput", None, targets=False)
    pxoutput.add_argument("ranks", nargs="?", default="all",
                          help="whose output: 3, 1,3, 0:4, -1 or all (the default)")
    pxoutput.add_argument("--cell", type=int, default=None, metavar="N",
                          help="the cell In[N] (default: the last cell run on the ranks)")
    pxoutput.add_argument("--from", dest="start", type=int, default=0, metavar="BYTES",
                          help="show each rank's output from this offset on (a page is "
                          "HubKernel.output_page; its last line gives the next offset)")
    return {"peek": peek, "where": where, "push": push, "pull": pull,
            "provenance": provenance, "pxoutput": pxoutput, "liveplot": liveplot,
            "dashboard": dashboard}


MAGIC_PARSERS = _magic_parsers()


def parse_magic(magic: str, line: str) -> argparse.Namespace:
    """Options of ``%peek``, ``%where``, ``%push``, ``%pull``, ``%provenance``,
    ``%pxoutput``, ``%liveplot`` or ``%dashboard``."""
    return _parse(line, MAGIC_PARSERS[magic])


@dataclass
class Route:
    """Where a cell runs (``kind``) and ``code``, what to run there."""

    kind: RouteKind
    code: str
    options: PxOptions


def route_cell(code: str, hub: HubMagics) -> Route:
    """Decide where a cell runs, ``hub`` naming the hub's magics. Raises MagicUsageError
    for bad ``%%px`` options."""
    first, _, rest = code.lstrip("\n").partition("\n")
    head = first.strip()
    if head == "%%local" or head.startswith("%%local "):
        return Route("local", rest, PxOptions())
    if head == "%%px" or head.startswith("%%px "):
        return Route("px", rest, parse_px_options(head[len("%%px"):]))
    if head.startswith("%%") and head[2:].split(maxsplit=1)[0:1] in ([m] for m in hub.cell):
        return Route("hub", code, PxOptions())
    if head.startswith("%") and not head.startswith("%%"):
        name = head[1:].split(maxsplit=1)[0] if len(head) > 1 else ""
        if name in hub.line:
            return Route("hub", code, PxOptions())
    return Route("px", code, PxOptions())


def strip_local_marker(lines: list[str]) -> list[str]:
    """IPython input transformer: blank out a leading ``%%local`` line."""
    for i, line in enumerate(lines):
        if line.strip():
            if line.strip() == "%%local" or line.lstrip().startswith("%%local "):
                # An empty line in its place: the debugger's line numbers are the cell's
                # (IPython drops leading empty lines, unless a debug session is on).
                return [*lines[:i], "\n", *lines[i + 1:]]
            break
    return lines
