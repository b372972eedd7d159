"""``hpckernel submit`` (a notebook as a batch job) and ``hpckernel provenance`` (what ran,
where) — the notebook commands of the ``hpckernel`` CLI (``cli.py`` registers them)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import replace
from pathlib import Path

from . import provenance
from .jobrequest.options import add_arguments, given, positive_int
from .slurm import ParseError, SlurmError
from .submit.params import ParameterError, parse_assignment, parse_yaml, read_yaml_file
from .submit.spec import (
    SUBMIT_SETTINGS,
    RunError,
    RunSpec,
    load_record,
    local_run_id,
    prepare,
    save_record,
)
from .timestamps import now

# --output, --timeout, --ranks and the Slurm options (SUBMIT_SETTINGS) default to None, so
# that --resubmit can tell which ones were given.


def _parameter(text: str) -> tuple[str, str]:
    """argparse type of ``-p``: ``NAME=VALUE`` (``cli.join_pairs`` made it one word)."""
    try:
        return parse_assignment(text)
    except ParameterError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``submit`` and ``provenance`` to the CLI's subparsers."""
    run = sub.add_parser("submit", help="run a notebook headless as a Slurm batch job "
                         "(or --local) and write the executed notebook",
                         description="Runs NOTEBOOK with nbclient inside a Slurm job (ranks "
                         "across the allocation) and writes NOTEBOOK.run-<jobid>.ipynb beside "
                         "it, with outputs and provenance; prints the job id. The settings "
                         "are kept in NOTEBOOK.run-<jobid>.json for --resubmit.")
    what = run.add_mutually_exclusive_group(required=True)
    what.add_argument("notebook", nargs="?", help="the notebook to run")
    what.add_argument("--resubmit", metavar="RUN", help="repeat an earlier run (its .json "
                      "record or executed .ipynb) with the same settings, except those given")
    run.add_argument("-p", "--parameter", type=_parameter, action="append", default=[],
                     dest="parameters", metavar="NAME VALUE",
                     help="set a parameter: a cell NAME = VALUE is injected after the cell "
                     "tagged 'parameters' (VALUE is a Python literal, else a string; "
                     "NAME=VALUE works too)")
    run.add_argument("-f", "--parameters-file", "--parameters_file", action="append",
                     default=[], dest="parameter_files", metavar="YAML_FILE",
                     help="parameters from a YAML file (as papermill's -f)")
    run.add_argument("-y", "--parameters-yaml", "--parameters_yaml", action="append",
                     default=[], dest="parameter_yaml", metavar="YAML",
                     help="parameters as a YAML mapping, e.g. -y 'n: 10' (as papermill's -y)")
    run.add_argument("--output", help="executed notebook ({run_id} is replaced; default: "
                     "NOTEBOOK.run-{run_id}.ipynb)")
    run.add_argument("--timeout", type=float, help="seconds each cell may run (default: "
                     "no limit but the walltime)")
    run.add_argument("--wait", action="store_true",
                     help="wait for the job to end; exit 1 if the notebook failed")
    run.add_argument("--local", action="store_true",
                     help="run here, on local MPI ranks (mpiexec), not in a Slurm job")
    run.add_argument("--ranks", type=positive_int, help="MPI ranks with --local (default 4)")
    slurm = run.add_argument_group("Slurm options (sbatch's, on its command line)")
    add_arguments(slurm, SUBMIT_SETTINGS, given_only=True)  # None: not given

    prov = sub.add_parser("provenance", help="show the provenance records of a notebook",
                          description="Prints what ran in each cell of NOTEBOOK, where and "
                          "how it ended: the records kept in its cells (hpckernel submit), "
                          "else those of its log NOTEBOOK.provenance.jsonl.")
    prov.add_argument("notebook", help="a notebook run by hpckernel")
    prov.add_argument("--json", action="store_true", help="the records as JSON lines")


def run_command(args: argparse.Namespace) -> int | None:
    """Run ``submit`` or ``provenance``; None for the CLI's other commands."""
    try:
        if args.command == "submit":
            return _submit(args)
        if args.command == "provenance":
            print(provenance.show(Path(args.notebook), args.json))
            return 0
    except (RunError, ParseError, SlurmError, FileNotFoundError, ValueError) as e:
        print(f"hpckernel {args.command}: {e}", file=sys.stderr)
        return 2
    return None


def _spec(args: argparse.Namespace) -> RunSpec:
    """The run's settings: an earlier run's (with --resubmit) or the defaults, then every
    option given on this command line."""
    base = (load_record(args.resubmit) if args.resubmit
            else RunSpec(notebook=str(Path(args.notebook).resolve())))
    job = base.job.replace(**given(args, SUBMIT_SETTINGS))
    # As papermill: files, then YAML strings, then -p, each overriding the ones before.
    parameters = dict(base.parameters)
    for path in args.parameter_files:
        parameters.update(read_yaml_file(path))
    for text in args.parameter_yaml:
        parameters.update(parse_yaml(text, "-y"))
    parameters.update(args.parameters)
    spec = replace(base, job=job, parameters=parameters, run_id="", submitted=now(),
                   output=base.output if args.output is None else args.output,
                   timeout=base.timeout if args.timeout is None else args.timeout,
                   ranks=base.ranks if args.ranks is None else args.ranks,
                   local=base.local or args.local)
    if spec.output:
        spec.output = str(Path(spec.output).absolute())
    if not spec.local:
        spec.job.require_walltime()
    return spec


def _submit(args: argparse.Namespace) -> int:
    """``hpckernel submit``: run the notebook here (``--local``) or submit its job."""
    from .submit import batch, execute  # nbclient & co. only for this command

    spec = _spec(args)
    prepare(spec)  # a missing or broken notebook fails here, before anything is queued
    if spec.local:
        spec.run_id = local_run_id()
        record = save_record(spec, status="running")
        print(spec.run_id, flush=True)
        code = execute.run(spec)
        save_record(spec, status="ok" if code == 0 else "failed", ended=now())
        print(f"run record: {record}", file=sys.stderr)
        return code
    spec.run_id = asyncio.run(batch.submit(spec))
    record = save_record(spec, status="submitted")
    print(spec.run_id, flush=True)
    print(f"Slurm job {spec.run_id}: {spec.job.nodes} node(s) x {spec.job.ntasks_per_node} "
          f"rank(s); executed notebook: {spec.output_path()}; run record: {record}",
          file=sys.stderr)
    if not args.wait:
        return 0
    info = asyncio.run(batch.wait(spec.run_id))
    state = info.state if info else "gone"
    exit_code = info.exit_code if info else None
    ok = state == "COMPLETED" and not exit_code
    save_record(spec, status="ok" if ok else "failed", state=state, exit_code=exit_code)
    print(f"Slurm job {spec.run_id} ended: {state} (exit code {exit_code}); log: "
          f"{Path(spec.notebook).with_name(Path(spec.notebook).stem)}.run-{spec.run_id}.log",
          file=sys.stderr)
    return 0 if ok else 1
