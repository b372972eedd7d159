"""Command-line options made from the traits of ``JobSettings``, one per setting.

Each option is named like its setting (``--ntasks-per-node``; a list setting's ``flag``
metadata names its repeatable option, ``--sbatch-arg``), carries the setting's help and
checks its value with the setting's own checks. ``python -m hpckernel.bridge`` takes every
setting; ``hpckernel install --slurm`` and ``hpckernel submit`` take theirs.
:func:`to_argv` writes a kernelspec's provisioner config as the bridge's options, which
:func:`add_arguments` and :func:`from_args` read back.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping

from traitlets import Bool, Float, Integer, List, TraitError

from .settings import SETTING_NAMES, JobSettings, setting, settings_from


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1 (nodes, ranks)."""
    value = _whole_number(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def flag(name: str) -> str:
    """The command-line option of setting ``name``."""
    return str(setting(name).metadata.get("flag") or "--" + name.replace("_", "-"))


def _reader(name: str) -> Callable[[str], object]:
    """argparse type of setting ``name``: the text as the trait's type, checked by the
    trait (a list setting's option gives one item)."""
    trait = setting(name)
    convert: Callable[[str], object] = (
        _whole_number if isinstance(trait, Integer) else
        _number if isinstance(trait, Float) else str)

    def read(text: str) -> object:
        value = convert(text)
        try:
            JobSettings(**{name: [value] if isinstance(trait, List) else value})
        except TraitError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        return value

    return read


def add_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup,
                  names: tuple[str, ...] = SETTING_NAMES, given_only: bool = False) -> None:
    """One option per setting in ``names``, with the setting's help. ``given_only``:
    options not on the command line are None (so that callers keep their own defaults)."""
    for name in names:
        trait = setting(name)
        default = trait.default()
        value = None if given_only else default
        helptext = str(trait.help)
        if given_only and default not in ("", [], False) and name != "python":
            helptext += f" (default {default})"
        if isinstance(trait, Bool):
            parser.add_argument(flag(name), dest=name, default=value,
                                action=argparse.BooleanOptionalAction, help=helptext)
        elif isinstance(trait, List):
            parser.add_argument(flag(name), dest=name, action="append", default=value,
                                type=_reader(name), metavar="ARG",
                                help=helptext + " (repeatable)")
        else:
            parser.add_argument(flag(name), dest=name, default=value, type=_reader(name),
                                help=helptext)


def given(args: argparse.Namespace, names: tuple[str, ...]) -> dict[str, object]:
    """The settings among ``names`` that options of :func:`add_arguments` with
    ``given_only`` set: those on the command line."""
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def from_args(args: argparse.Namespace) -> JobSettings:
    """The settings :func:`add_arguments` parsed; raises SettingError for a bad value."""
    return settings_from({name: getattr(args, name) for name in SETTING_NAMES})


def to_argv(config: Mapping[str, object]) -> list[str]:
    """Command-line options for the settings in ``config`` (a kernelspec's provisioner
    config); raises SettingError for an unknown name or a bad value."""
    settings_from(config)
    argv: list[str] = []
    for name, value in config.items():
        if isinstance(value, list):
            argv.extend(f"{flag(name)}={item}" for item in value)
        elif isinstance(value, bool):
            argv.append(flag(name) if value else f"--no-{name.replace('_', '-')}")
        else:
            argv.append(f"{flag(name)}={value}")
    return argv

