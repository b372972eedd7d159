"""Provenance: what each executed cell was, where and with what it ran, and how it ended.

The hub (``hub/recorder.py``) builds one record per cell and sends it in the
``execute_reply`` metadata (``metadata.hpckernel.provenance``) and to a JSON-lines log next
to the notebook. Frontends do not save reply metadata themselves: :func:`keep_in_cell` is
the nbclient hook (``on_cell_executed``) that puts the record into the cell's metadata, as
``hpckernel submit`` does; interactive sessions (JupyterLab) leave the log.
``hpckernel provenance NOTEBOOK`` prints the records of either.
"""

from __future__ import annotations

import asyncio
import json
import platform
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .gitstate import git_state
from .plane.addresses import node_name
from .targets import format_ranks, format_sorted
from .timestamps import shown

if TYPE_CHECKING:  # the type only: the hub imports this module, nbformat only to show
    from nbformat import NotebookNode

#: Packages whose versions every record carries (those installed).
PACKAGES = ("hpckernel", "ipykernel", "ipython", "jupyter_client", "pyzmq", "mpi4py",
            "numpy", "cloudpickle")
LOG_SUFFIX = ".provenance.jsonl"
FALLBACK_LOG = "hpckernel-provenance.jsonl"


# -- where the log goes -------------------------------------------------------------------

def notebook_path(session_name: str | None, cwd: Path) -> Path | None:
    """The notebook a kernel runs for: jupyter_server sets ``JPY_SESSION_NAME`` to its path
    (absolute, or relative to the server root — the kernel then runs in its directory)."""
    if not session_name or not session_name.endswith(".ipynb"):
        return None
    path = Path(session_name)
    return path if path.is_absolute() else cwd / path.name


def log_path(notebook: Path | None, cwd: Path) -> Path:
    """``analysis.ipynb`` → ``analysis.provenance.jsonl`` beside it; without a notebook,
    ``hpckernel-provenance.jsonl`` in the working directory."""
    if notebook is None:
        return cwd / FALLBACK_LOG
    return notebook.with_name(notebook.stem + LOG_SUFFIX)


# -- the environment, probed once per hub ----------------------------------------------------

def package_versions() -> dict[str, str]:
    """The installed versions of the packages a record names (missing ones left out)."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


async def probe_environment(cwd: Path) -> dict[str, object]:
    """What stays the same for every cell of a hub: Python, packages, git, host."""
    return {"python": platform.python_version(),
            "packages": await asyncio.to_thread(package_versions),
            # Read as data: running git would run what the directory's .git/config names.
            "git": await asyncio.to_thread(git_state, cwd), "cwd": str(cwd),
            "hub_host": node_name()}


# -- records ------------------------------------------------------------------------------

def mpi_summary(version: str) -> str:
    """The first line of MPI_Get_library_version, spaces collapsed (MPICH's is 20 lines)."""
    first = version.strip().splitlines()[0] if version.strip() else ""
    return " ".join(first.split())[:200]


def rank_state(reply: Mapping[str, object] | None) -> str:
    """``ok``, ``error``, ``dead``, ``stuck`` (or ``running``) from a rank's reply."""
    if reply is None:
        return "running"
    if reply.get("status") == "ok":
        return "ok"
    return {"RankDied": "dead", "RanksRestarted": "dead",
            "RankStuck": "stuck"}.get(str(reply.get("ename")), "error")


def rank_states(targets: list[int], replies: Mapping[int, Mapping[str, object]]
                ) -> dict[str, str]:
    """The state of each of ``targets`` (as :func:`~hpckernel.targets.parse_targets` gives
    them) from their replies so far, as :func:`state_ranges`."""
    odd = {r: rank_state(h) for r, h in replies.items() if h.get("status") != "ok"}
    if len(replies) < len(targets):
        odd.update((r, "running") for r in targets if r not in replies)
    return state_ranges(targets, odd)


def state_ranges(targets: list[int], odd: Mapping[int, str]) -> dict[str, str]:
    """``{"ok": "0-3,5", "error": "4"}``: each state's ranks as a range string, ``ok`` for
    those of ``targets`` not in ``odd``. One entry per state, not per rank: at 16,384 ranks
    a record of one entry per rank was most of the hub's CPU per cell."""
    groups: dict[str, list[int]] = {}
    for rank, state in sorted(odd.items()):
        groups.setdefault(state, []).append(rank)
    ok = [r for r in targets if r not in odd] if odd else targets
    states = {"ok": format_sorted(ok)} if ok else {}
    states.update((state, format_sorted(ranks)) for state, ranks in groups.items())
    return states


def states_text(states: dict[str, str]) -> str:
    """``{"ok": "0", "error": "1"}`` → ``ok 0; error 1`` (just ``ok`` if all are). Reads
    records of earlier versions too, one entry per rank (``{"0": "ok", "1": "error"}``)."""
    if states and all(key.isdigit() for key in states):
        groups: dict[str, list[int]] = {}
        for rank, state in states.items():
            groups.setdefault(state, []).append(int(rank))
        states = {state: format_ranks(ranks) for state, ranks in groups.items()}
    if list(states) == ["ok"]:
        return "ok"
    return "; ".join(f"{state} {ranks}" for state, ranks in states.items())


def targets_text(targets: str | list[int] | None) -> str:
    """Where a record's cell ran: ``hub``, or its ranks (a range string; a list of ranks in
    records of earlier versions)."""
    if targets is None:
        return "hub"
    return targets if isinstance(targets, str) else format_ranks(targets)


# -- reading and showing ----------------------------------------------------------------------

def keep_in_cell(cell: NotebookNode, execute_reply: dict[str, Any] | None, **_: object
                 ) -> None:
    """nbclient ``on_cell_executed`` hook: save the cell's record in its metadata."""
    record = ((execute_reply or {}).get("metadata") or {}).get("hpckernel", {}).get(
        "provenance")
    if record is not None:
        cell.metadata["hpckernel"] = {"provenance": record}


def from_notebook(nb: NotebookNode) -> list[dict[str, Any]]:
    """The records kept in a notebook's cells, in cell order."""
    return [cell.metadata["hpckernel"]["provenance"] for cell in nb.cells
            if "provenance" in cell.get("metadata", {}).get("hpckernel", {})]


def read_log(path: Path) -> list[dict[str, Any]]:
    """The records of a log; a later line for the same record (a ``--noblock`` cell that
    finished) replaces the earlier one."""
    records: dict[str, dict[str, Any]] = {}
    with open(path) as f:
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line cut short by a crash
            records[record.get("id") or str(len(records))] = record
    return list(records.values())


def _first_line(code: str, width: int = 48) -> str:
    line = next((s.strip() for s in code.splitlines() if s.strip()), "")
    return line if len(line) <= width else line[:width - 3] + "..."


def format_table(records: list[dict[str, Any]]) -> str:
    """A readable table of records, then where the last one ran."""
    if not records:
        return "no cells recorded yet"
    rows = [("In", "where", "started", "secs", "status", "ranks", "code")]
    for r in records:
        where = targets_text(r.get("targets"))
        secs = "-" if r.get("seconds") is None else f"{r['seconds']:.2f}"
        rows.append((str(r.get("execution_count") or ""), f"{r.get('kind', '')}:{where}",
                     shown(r.get("start")), secs, r.get("status", ""),
                     states_text(r.get("ranks") or {}) if r.get("ranks") else "",
                     _first_line(r.get("code", ""))))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    return "\n".join([*lines, "", describe_context(records[-1])])


def describe_context(record: dict[str, Any]) -> str:
    """``Slurm job 42 on n[1-3], 4 MPI ranks (MPICH Version: 4.2.0), Python 3.11.2, ...``"""
    env = record.get("environment") or {}
    job = record.get("job")
    parts = [f"Slurm job {job['id']}" + (f" on {job['nodes']}" if job.get("nodes") else "")
             if job else f"no Slurm job, on {env.get('hub_host', '?')}"]
    parts.append(f"{record.get('size', '?')} MPI ranks"
                 + (f" ({record['mpi']})" if record.get("mpi") else ""))
    packages = env.get("packages") or {}
    parts.append(f"Python {env.get('python', '?')}, " + ", ".join(
        f"{name} {version}" for name, version in packages.items()))
    git = env.get("git")
    if git:
        parts.append(f"git {git['commit'][:12]}" + (" (uncommitted changes)"
                                                      if git.get("dirty") else ""))
    return "; ".join(parts)


def show(path: Path, as_json: bool = False) -> str:
    """What ``hpckernel provenance NOTEBOOK`` prints: the records kept in the notebook's
    cells, else those of its log. Raises FileNotFoundError/ValueError with a clear message."""
    import nbformat

    if not path.is_file():
        raise FileNotFoundError(f"no notebook at {path}")
    try:
        records = from_notebook(nbformat.read(path, as_version=4))
    except ValueError as e:  # nbformat's NotJSONError is one
        raise ValueError(f"{path} is not a notebook: {e}") from None
    source = f"cells of {path}"
    log = log_path(path.resolve(), path.resolve().parent)
    if not records and log.is_file():
        records, source = read_log(log), str(log)
    if not records:
        raise ValueError(f"{path} holds no hpckernel provenance (its cells were not run by "
                         f"hpckernel submit), and there is no log at {log}")
    if as_json:
        return "\n".join(json.dumps(r) for r in records)
    return f"{len(records)} cells, from the {source}\n\n{format_table(records)}"

