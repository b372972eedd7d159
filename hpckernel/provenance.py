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
from importlib import metadata
from pathlib import Path
from typing import Any

from .plane.addresses import node_name
from .targets import format_ranks
from .timestamps import shown

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
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


async def _git(cwd: Path, *args: str) -> str | None:
    try:
        proc = await asyncio.create_subprocess_exec(
            "git", *args, cwd=cwd, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    except OSError:  # no git
        return None
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 10)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        return None
    return out.decode(errors="replace").strip() if proc.returncode == 0 else None


async def git_state(cwd: Path) -> dict[str, Any] | None:
    """The commit checked out in ``cwd`` and whether tracked files differ from it."""
    commit = await _git(cwd, "rev-parse", "HEAD")
    if not commit:
        return None
    changes = await _git(cwd, "status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(changes)}


async def probe_environment(cwd: Path) -> dict[str, Any]:
    """What stays the same for every cell of a hub: Python, packages, git, host."""
    return {"python": platform.python_version(),
            "packages": await asyncio.to_thread(package_versions),
            "git": await git_state(cwd), "cwd": str(cwd), "hub_host": node_name()}


# -- records ------------------------------------------------------------------------------

def mpi_summary(version: str) -> str:
    """The first line of MPI_Get_library_version, spaces collapsed (MPICH's is 20 lines)."""
    first = version.strip().splitlines()[0] if version.strip() else ""
    return " ".join(first.split())[:200]


def rank_state(reply: dict[str, Any] | None) -> str:
    """``ok``, ``error``, ``dead``, ``stuck`` (or ``running``) from a rank's reply."""
    if reply is None:
        return "running"
    if reply.get("status") == "ok":
        return "ok"
    return {"RankDied": "dead", "RanksRestarted": "dead",
            "RankStuck": "stuck"}.get(str(reply.get("ename")), "error")


def states_text(states: dict[str, str]) -> str:
    """``{"0": "ok", "1": "error"}`` → ``ok 0; error 1`` (just ``ok`` if all are)."""
    groups: dict[str, list[int]] = {}
    for rank, state in states.items():
        groups.setdefault(state, []).append(int(rank))
    if list(groups) == ["ok"]:
        return "ok"
    return "; ".join(f"{state} {format_ranks(ranks)}" for state, ranks in groups.items())


# -- reading and showing ----------------------------------------------------------------------

def keep_in_cell(cell: Any, execute_reply: dict[str, Any] | None, **_: Any) -> None:
    """nbclient ``on_cell_executed`` hook: save the cell's record in its metadata."""
    record = ((execute_reply or {}).get("metadata") or {}).get("hpckernel", {}).get(
        "provenance")
    if record is not None:
        cell.metadata["hpckernel"] = {"provenance": record}


def from_notebook(nb: Any) -> list[dict[str, Any]]:
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
        where = "hub" if r.get("targets") is None else format_ranks(r["targets"])
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

