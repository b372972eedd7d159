"""Notebook steps: run a notebook headless inside a Slurm job, papermill-style.

    python -m hpckernel.workflow.nbrun IN.ipynb OUT.ipynb [--parameters JSON] [--kernel K]

Injects a code cell assigning the parameters right after the cell tagged "parameters" (at
the top if none is tagged), as papermill does, so the notebook's defaults are overridden;
executes every cell with nbclient on kernel `K` (`python3`, i.e. ipykernel, by default) in
the notebook's directory; writes the executed notebook to OUT even when a cell fails, then
exits 1 so the job FAILS and the notebook shows where.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import nbformat

from .. import notebook_run
from ..submit.params import inject


def run(source: Path, target: Path, parameters: Mapping[str, object], kernel: str) -> bool:
    """Execute `source` with `parameters` into `target`; False if a cell raised."""
    nb = nbformat.read(source, as_version=4)
    inject(nb, parameters)  # the same injection as `hpckernel submit -p`
    nb.metadata["hpckernel"] = {"source": str(source), "parameters": dict(parameters),
                                "job_id": os.environ.get("SLURM_JOB_ID")}
    outcome = notebook_run.execute(nb, source.parent, kernel=kernel)
    notebook_run.record_papermill(nb, parameters, source, target, outcome)
    notebook_run.write(nb, target)
    if outcome.error is not None:
        print(f"notebook {source} failed; executed notebook in {target}\n{outcome.error}",
              file=sys.stderr)
        return False
    return True


def main(argv: Sequence[str]) -> int:
    """``python -m hpckernel.workflow.nbrun SOURCE TARGET``, in a notebook step's job: 1 if
    a cell failed."""
    parser = argparse.ArgumentParser(prog="python -m hpckernel.workflow.nbrun")
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("--parameters", default="{}", help="JSON object")
    parser.add_argument("--kernel", default="python3")
    args = parser.parse_args(argv)
    ok = run(args.source, args.target, json.loads(args.parameters), args.kernel)
    print(f"executed notebook: {args.target}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
