"""The ``hpckernel`` command: install kernelspecs, run the demo."""

from __future__ import annotations

import argparse
import sys

from . import __version__, notebook_cli
from .jobrequest import JobSettings, SettingError
from .jobrequest.options import add_arguments, given, positive_int
from .kernelspec import (
    LOCAL_DISPLAY,
    LOCAL_NAME,
    SLURM_DISPLAY,
    SLURM_NAME,
    KernelSpecError,
    default_prefix,
    install,
)
from .slurm import ParseError


def _env_pair(text: str) -> tuple[str, str]:
    """argparse type of ``--env``: ``NAME=VALUE`` (``join_pairs`` made it one word)."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"--env takes NAME VALUE (or NAME=VALUE), not "
                                         f"{text!r}")
    return name, value


#: Options taking a name and a value as two words (ipykernel's ``--env NAME VALUE``,
#: papermill's ``-p NAME VALUE``) or as one (``NAME=VALUE``).
_PAIR_OPTIONS = frozenset({"--env", "-p", "--parameter"})


def join_pairs(argv: list[str]) -> list[str]:
    """``--env NAME VALUE`` → ``--env NAME=VALUE``. Names never hold '=', so a word after
    such an option without one is a name whose value is the next word."""
    joined: list[str] = []
    words = iter(argv)
    for word in words:
        joined.append(word)
        if word in _PAIR_OPTIONS:
            name = next(words, None)
            if name is None:
                break
            value = None if "=" in name else next(words, None)
            joined.append(name if value is None else f"{name}={value}")
    return joined


# The options of `install --slurm`: each sets the SlurmProvisioner trait of the same name.
INSTALL_SETTINGS = ("partition", "nodes", "ntasks_per_node", "time", "account", "qos",
                    "constraint", "sbatch_args", "setup", "launch_timeout", "login",
                    "ssh_args", "python", "export_env", "overcommit")


def build_parser() -> argparse.ArgumentParser:
    """The ``hpckernel`` command line: ``install``, ``demo``, ``submit``, ``provenance``."""
    parser = argparse.ArgumentParser(prog="hpckernel", description=__doc__)
    parser.add_argument("--version", action="version", version=f"hpckernel {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    inst = sub.add_parser("install", help="install a kernelspec so Jupyter offers the kernel")
    kind = inst.add_mutually_exclusive_group()
    kind.add_argument("--local", action="store_true",
                      help="ranks on this machine, started by mpiexec (the default)")
    kind.add_argument("--slurm", action="store_true",
                      help="ranks in a Slurm allocation that the kernel submits")
    inst.add_argument("--ranks", type=positive_int, default=4,
                      help="number of MPI ranks (--local)")
    inst.add_argument("--name", default=None,
                      help=f"kernelspec name (default: {LOCAL_NAME} or {SLURM_NAME})")
    inst.add_argument("--display-name", default=None,
                      help=f"name shown in Jupyter (default: {LOCAL_DISPLAY!r} or "
                      f"{SLURM_DISPLAY!r}, with the size when not the default)")
    slurm = inst.add_argument_group("Slurm options (with --slurm; each sets the "
                                    "SlurmProvisioner trait of the same name)")
    add_arguments(slurm, INSTALL_SETTINGS, given_only=True)
    where = inst.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="install for the current user")
    where.add_argument("--sys-prefix", action="store_true",
                       help="install into this Python environment (sys.prefix)")
    where.add_argument("--prefix", help="install under this prefix")
    inst.add_argument("--env", type=_env_pair, action="append", default=[],
                      metavar="NAME VALUE", help="environment variable for the kernel "
                      "(repeatable; NAME=VALUE works too)")

    demo = sub.add_parser("demo", help="run the example notebook on local MPI ranks")
    demo.add_argument("--ranks", type=positive_int, default=4, help="number of MPI ranks")
    demo.add_argument("--notebook", default=None, help="notebook to run (default: the "
                      "bundled examples/mpi_demo.ipynb)")
    demo.add_argument("--output", default=None, help="where to write the executed notebook")
    demo.add_argument("--timeout", type=float, default=120, help="seconds per cell")
    notebook_cli.add_commands(sub)  # submit, provenance
    return parser


def _slurm_settings(args: argparse.Namespace) -> dict[str, object]:
    """The SlurmProvisioner traits the options set (defaults left out of the spec)."""
    # The size is always written, so the kernelspec says what it asks for.
    defaults = JobSettings()
    settings: dict[str, object] = {key: getattr(defaults, key)
                                   for key in ("nodes", "ntasks_per_node", "time")}
    settings.update({key: value for key, value in given(args, INSTALL_SETTINGS).items()
                     if value not in ("", [])})
    JobSettings(**settings).require_walltime()
    return settings


def _install(args: argparse.Namespace) -> int:
    """``hpckernel install``: a local MPI kernelspec, or with ``--slurm`` a Slurm one."""
    prefix = default_prefix(args.sys_prefix, args.prefix)
    env = dict(args.env) or None
    if args.slurm:
        name = args.name or SLURM_NAME
        display = args.display_name or SLURM_DISPLAY
        path = install(name, user=args.user, prefix=prefix, slurm=_slurm_settings(args),
                       display_name=display, env=env)
    else:
        name = args.name or LOCAL_NAME
        display = args.display_name or (
            LOCAL_DISPLAY if args.ranks == 4 else f"{LOCAL_DISPLAY}, {args.ranks} ranks")
        path = install(name, user=args.user, prefix=prefix, ranks=args.ranks,
                       display_name=display, env=env)
    print(f"Installed kernelspec {name!r} ({display}) in {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """The ``hpckernel`` command; its exit code (2 for bad input, with one line why)."""
    args = build_parser().parse_args(join_pairs(sys.argv[1:] if argv is None else argv))
    handled = notebook_cli.run_command(args)
    if handled is not None:
        return handled
    try:
        if args.command == "install":
            return _install(args)
        if args.command == "demo":
            from .demo import run_demo

            return run_demo(args.ranks, args.notebook, args.output, args.timeout)
    except (KernelSpecError, SettingError, ParseError) as e:
        print(f"hpckernel: {e}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
