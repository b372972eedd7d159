"""``python -m hpckernel.live SCRIPT [ARGS…]`` or ``python -m hpckernel.live -m MODULE
[ARGS…]``: run a program on this rank as ``__main__``, unchanged, and attachable by a
notebook (``hpckernel.attach``) while it runs. Start it on every rank (``srun``,
``mpiexec``); the exit status is the program's."""

from __future__ import annotations

import runpy
import sys

USAGE = "usage: python -m hpckernel.live SCRIPT [ARGS...] | -m MODULE [ARGS...]"


def main(argv: list[str] | None = None) -> None:
    """Run the program given by ``argv`` as ``__main__`` with this rank's live machinery
    started, then tell the job how it ended (the module docstring)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help") or (args[0] == "-m" and len(args) < 2):
        print(USAGE, file=sys.stderr if args[:1] != ["-h"] else sys.stdout)
        sys.exit(0 if args[:1] in (["-h"], ["--help"]) else 2)
    from pathlib import Path

    from .rank import start_here

    live = start_here()
    error: BaseException | None = None
    try:
        if args[0] == "-m":
            sys.argv = [args[1], *args[2:]]
            runpy.run_module(args[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv = args
            sys.path[0] = str(Path(args[0]).resolve().parent)  # as `python SCRIPT` sets it
            runpy.run_path(args[0], run_name="__main__")
    except BaseException as e:
        error = e
        raise
    finally:
        live.end(error)


if __name__ == "__main__":
    main()
