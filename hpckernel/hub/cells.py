"""Where a cell runs: on the ranks (default), in the hub (``%%local``), or as a hub magic.

Parsing of the px options lives here too, so the kernel's ``do_execute`` and the
IPython magics registered in the hub share one definition.
"""

from __future__ import annotations

import argparse
import shlex
from dataclasses import dataclass

#: Line magics that act on the ranks from the hub; a cell starting with one runs in the hub.
HUB_LINE_MAGICS = frozenset({"px", "pxconfig", "pxresult", "ranks", "restart_ranks"})


class MagicUsageError(ValueError):
    """Bad options to one of hpckernel's magics."""


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


PX_PARSER = _px_parser("px")
PXCONFIG_PARSER = _px_parser("pxconfig")


@dataclass
class PxOptions:
    targets: str | None = None
    block: bool | None = None


def parse_px_options(line: str, parser: _Parser = PX_PARSER) -> PxOptions:
    try:
        args = parser.parse_args(shlex.split(line))
    except argparse.ArgumentError as e:
        raise MagicUsageError(f"%{parser.prog}: {e}\n{parser.format_usage().strip()}") from None
    return PxOptions(targets=args.targets, block=args.block)


@dataclass
class Route:
    """``kind`` is ``px``, ``local`` or ``hub``; ``code`` what to run there."""

    kind: str
    code: str
    options: PxOptions


def route_cell(code: str) -> Route:
    """Decide where a cell runs. Raises MagicUsageError for bad ``%%px`` options."""
    first, _, rest = code.lstrip("\n").partition("\n")
    head = first.strip()
    if head == "%%local" or head.startswith("%%local "):
        return Route("local", rest, PxOptions())
    if head == "%%px" or head.startswith("%%px "):
        return Route("px", rest, parse_px_options(head[len("%%px"):]))
    if head.startswith("%") and not head.startswith("%%"):
        name = head[1:].split(maxsplit=1)[0] if len(head) > 1 else ""
        if name in HUB_LINE_MAGICS:
            return Route("hub", code, PxOptions())
    return Route("px", code, PxOptions())


def strip_local_marker(lines: list[str]) -> list[str]:
    """IPython input transformer: drop a leading ``%%local`` line."""
    for i, line in enumerate(lines):
        if line.strip():
            if line.strip() == "%%local" or line.lstrip().startswith("%%local "):
                return lines[:i] + lines[i + 1:]
            break
    return lines
