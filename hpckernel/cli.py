"""The ``hpckernel`` command: install kernelspecs, run the demo."""

from __future__ import annotations

import argparse
import sys

from . import __version__
from .kernelspec import LOCAL_DISPLAY, LOCAL_NAME, KernelSpecError, default_prefix, install


def _env_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"--env takes NAME=VALUE, not {text!r}")
    return name, value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hpckernel", description=__doc__)
    parser.add_argument("--version", action="version", version=f"hpckernel {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    inst = sub.add_parser("install", help="install a kernelspec so Jupyter offers the kernel")
    inst.add_argument("--local", action="store_true", default=True,
                      help="ranks on this machine, started by mpiexec (the default)")
    inst.add_argument("--ranks", type=_positive, default=4, help="number of MPI ranks")
    inst.add_argument("--name", default=LOCAL_NAME, help="kernelspec name")
    inst.add_argument("--display-name", default=None,
                      help=f"name shown in Jupyter (default: {LOCAL_DISPLAY!r}, "
                      "with the rank count when not 4)")
    where = inst.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="install for the current user")
    where.add_argument("--sys-prefix", action="store_true",
                       help="install into this Python environment (sys.prefix)")
    where.add_argument("--prefix", help="install under this prefix")
    inst.add_argument("--env", type=_env_pair, action="append", default=[],
                      metavar="NAME=VALUE", help="environment variable for the kernel")

    demo = sub.add_parser("demo", help="run the example notebook on local MPI ranks")
    demo.add_argument("--ranks", type=_positive, default=4, help="number of MPI ranks")
    demo.add_argument("--notebook", default=None, help="notebook to run (default: the "
                      "bundled examples/mpi_demo.ipynb)")
    demo.add_argument("--output", default=None, help="where to write the executed notebook")
    demo.add_argument("--timeout", type=float, default=120, help="seconds per cell")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "install":
            display = args.display_name or (
                LOCAL_DISPLAY if args.ranks == 4 else f"{LOCAL_DISPLAY}, {args.ranks} ranks")
            path = install(args.name, user=args.user,
                           prefix=default_prefix(args.sys_prefix, args.prefix),
                           ranks=args.ranks, display_name=display, env=dict(args.env) or None)
            print(f"Installed kernelspec {args.name!r} ({display}) in {path}")
            return 0
        if args.command == "demo":
            from .demo import run_demo

            return run_demo(args.ranks, args.notebook, args.output, args.timeout)
    except KernelSpecError as e:
        print(f"hpckernel: {e}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
