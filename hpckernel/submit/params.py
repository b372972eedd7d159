"""Notebook parameters, papermill-style: ``-p n 10`` becomes a cell ``n = 10`` placed right
after the cell tagged ``parameters`` (or first, if none is), so it overrides its defaults.

Parameters travel as Python-literal text (what ``-p`` gave, or the ``repr`` of a YAML value
from ``-f``/``-y``), so the run record keeps them as JSON strings; :func:`value_of` turns
them back into values when the notebook is prepared.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from pathlib import Path

import nbformat
import yaml
from nbformat import NotebookNode

PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"


class ParameterError(ValueError):
    """A ``-p NAME=VALUE`` that cannot become an assignment."""


def parse_assignment(text: str) -> tuple[str, str]:
    """``"n=10"`` → ``("n", "10")``; the value is kept as typed (see :func:`value_of`)."""
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or not name.isidentifier():
        raise ParameterError(f"-p takes NAME VALUE (or NAME=VALUE) with a Python name, not "
                             f"{text!r}")
    return name, value


def parse_yaml(text: str, origin: str) -> dict[str, str]:
    """Parameters from a YAML mapping (papermill's ``-y``/``-f``), as literal text."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ParameterError(f"{origin} is not YAML: {str(e).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ParameterError(f"{origin} must be a YAML mapping of NAME: VALUE, not "
                             f"{type(data).__name__}")
    parameters: dict[str, str] = {}
    for name, value in data.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ParameterError(f"{origin}: parameter {name!r} is not a Python name")
        text = repr(value)
        if value_of(text) != value:  # a date, a NaN: not a Python literal
            raise ParameterError(f"{origin}: {name}: {value!r} is not a plain value (number, "
                                 "string, boolean, null, list or mapping); quote it")
        parameters[name] = text
    return parameters


def read_yaml_file(path: str) -> dict[str, str]:
    """Parameters from a YAML file (``-f params.yaml``)."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ParameterError(f"-f {path}: {e.strerror or e}") from None
    return parse_yaml(text, path)


def value_of(text: str) -> object:
    """A Python literal if the text is one (``10``, ``0.5``, ``True``, ``[1, 2]``, ``'a'``),
    else the text itself as a string — as papermill's ``-p`` does."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text


def inject(nb: NotebookNode, parameters: Mapping[str, object]) -> None:
    """Put the cell assigning ``parameters`` (values, see :func:`value_of`) into ``nb``,
    replacing one injected by an earlier run."""
    nb.cells = [c for c in nb.cells if INJECTED_TAG not in c.get("metadata", {}).get("tags", [])]
    if not parameters:
        return
    anchor = next((i for i, c in enumerate(nb.cells) if c.cell_type == "code"
                   and PARAMETERS_TAG in c.get("metadata", {}).get("tags", [])), None)
    # Parameters go where their defaults are: the hub if that cell is %%local, else the ranks.
    local = anchor is not None and nb.cells[anchor].source.lstrip().startswith("%%local")
    lines = ["%%local"] if local else []
    lines += ["# Parameters (injected by hpckernel)"]
    lines += [f"{name} = {value!r}" for name, value in parameters.items()]
    cell = nbformat.v4.new_code_cell("\n".join(lines), metadata={"tags": [INJECTED_TAG]})
    nb.cells.insert(0 if anchor is None else anchor + 1, cell)
