"""Provenance records: in the execute_reply, in the log beside the notebook, in a notebook
run with nbclient, through %provenance and `hpckernel provenance`."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

from hpckernel.hub.mpi_library import probe
from hpckernel.kernelspec import write_kernel_spec
from hpckernel.provenance import keep_in_cell

from .harness import Kernel, Result, provenance_log, read_provenance_log

#: The MPI library the ranks run on, as mpi4py reports it here: "MPICH Version", "Open MPI"
LIBRARY = " ".join(asyncio.run(probe(os.environ)).summary.split()[:2])

BIN = Path(sys.executable).parent


def _git_repo(path: Path) -> str:
    """A git repository with one commit at ``path``; its commit id."""
    path.mkdir(parents=True, exist_ok=True)

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(path), *args], check=True, text=True,
                              capture_output=True).stdout.strip()

    git("init", "-q")
    (path / "analysis.py").write_text("x = 1\n")
    git("add", "analysis.py")
    git("-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "first")
    return git("rev-parse", "HEAD")


def _record(result: Result) -> dict[str, Any]:
    return dict(result.reply["metadata"]["hpckernel"]["provenance"])


@pytest.fixture(scope="module")
def notebook_kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Kernel, Path,
                                                                               str]]:
    """A 2-rank kernel running for ``project/analysis.ipynb`` in a git repository, as
    jupyter_server starts one (cwd: the notebook's directory, JPY_SESSION_NAME: its path)."""
    tmp = tmp_path_factory.mktemp("prov")
    project = tmp / "project"
    commit = _git_repo(project)
    kernel = Kernel(tmp, ranks=2, cwd=project,
                    env={"JPY_SESSION_NAME": "work/project/analysis.ipynb"})
    yield kernel, project, commit
    kernel.shutdown()


def test_every_cell_has_a_record_in_its_reply_and_the_log(
        notebook_kernel: tuple[Kernel, Path, str]) -> None:
    kernel, project, commit = notebook_kernel
    px = _record(kernel.ok("x = rank"))
    assert px["kind"] == "px" and px["code"] == "x = rank" and px["targets"] == "0-1"
    assert px["status"] == "ok" and px["ranks"] == {"ok": "0-1"}
    assert px["size"] == 2 and px["job"] is None and px["hosts"]
    assert px["mpi"].startswith(LIBRARY)
    assert px["start"] <= px["end"] and px["seconds"] >= 0
    env = px["environment"]
    assert env["git"] == {"commit": commit, "dirty": False}
    assert env["cwd"] == str(project)
    assert env["python"] == ".".join(map(str, sys.version_info[:3]))
    assert {"hpckernel", "ipykernel", "mpi4py", "numpy"} <= set(env["packages"])
    assert px["notebook"] == str(project / "analysis.ipynb")

    local = _record(kernel.ok("%%local\ny = 2"))
    assert local["kind"] == "local" and local["targets"] is None and local["ranks"] == {}
    magic = _record(kernel.ok("%ranks"))
    assert magic["kind"] == "magic"

    failed = kernel.run("%%px --targets 1\n1 / 0")
    record = _record(failed)
    assert record["status"] == "error" and record["ranks"] == {"error": "1"}
    assert record["error"] == "rank 1: ZeroDivisionError: division by zero"
    mixed = _record(kernel.run("if rank:\n    1 / 0"))
    assert mixed["targets"] == "0-1" and mixed["ranks"] == {"ok": "0", "error": "1"}
    usage = _record(kernel.run("%%px --targets 7\nx"))
    assert usage["status"] == "error" and "rank 7 does not exist" in usage["error"]

    records = (px, local, magic, record, mixed, usage)
    log = provenance_log(project / "analysis.provenance.jsonl", [r["id"] for r in records])
    by_id = {r["id"]: r for r in log}
    for rec in records:
        assert by_id[rec["id"]] == rec


def test_the_frontends_cell_id_is_recorded(notebook_kernel: tuple[Kernel, Path, str]
                                           ) -> None:
    kernel, _, _ = notebook_kernel
    result = kernel.collect(kernel.submit("y = 1", metadata={"cellId": "cell-abc"}))
    assert result is not None and result.status == "ok"
    assert _record(result)["cell_id"] == "cell-abc"


def test_noblock_cells_are_logged_again_when_their_ranks_finish(
        notebook_kernel: tuple[Kernel, Path, str], tmp_path: Path) -> None:
    kernel, project, _ = notebook_kernel
    flag = tmp_path / "stop"
    started = _record(kernel.ok(
        f"%%px --noblock\nimport os, time\nwhile not os.path.exists({str(flag)!r}):\n"
        "    time.sleep(0.05)"))
    assert started["status"] == "running"
    assert started["ranks"] == {"running": "0-1"}
    flag.touch()
    assert kernel.ok("%%local\nprint(_px.wait(60))").text() == "True\n"

    def lines() -> list[dict[str, Any]]:
        return [r for r in read_provenance_log(project / "analysis.provenance.jsonl")
                if r["id"] == started["id"]]

    deadline = time.monotonic() + 60  # the log's writer thread appends a moment later
    while len(lines()) < 2:
        assert time.monotonic() < deadline, lines()
        time.sleep(0.1)
    first, last = lines()
    assert (first["status"], last["status"]) == ("running", "ok")
    assert last["ranks"] == {"ok": "0-1"} and last["end"] >= first["start"]


def test_provenance_magic_shows_the_session_as_a_table(
        notebook_kernel: tuple[Kernel, Path, str]) -> None:
    kernel, project, commit = notebook_kernel
    kernel.ok("%%px --targets 0\nmarker_for_table = 1")
    text = kernel.ok("%provenance 2").text()
    header, first, second, blank, context, log = text.splitlines()
    assert header.split() == ["In", "where", "started", "secs", "status", "ranks", "code"]
    assert "px:0" in first and "%%px --targets 0" in first and " ok " in first
    assert "magic:hub" in second and "%provenance 2" in second and "running" in second
    assert blank == ""
    assert "no Slurm job" in context and f"2 MPI ranks ({LIBRARY}" in context
    assert f"git {commit[:12]}" in context
    assert log == f"log: {project / 'analysis.provenance.jsonl'}"
    as_json = kernel.ok("%provenance 1 --json").text()
    assert json.loads(as_json)["code"] == "%provenance 1 --json"


def test_without_a_notebook_the_log_is_in_the_working_directory(tmp_path: Path) -> None:
    kernel = Kernel(tmp_path, ranks=1, cwd=tmp_path, env={"JPY_SESSION_NAME": ""})
    try:
        record = _record(kernel.ok("print(1)"))
        assert record["notebook"] is None and record["environment"]["git"] is None
        logged = provenance_log(tmp_path / "hpckernel-provenance.jsonl", [record["id"]])
        assert [r["id"] for r in logged][-1] == record["id"]
    finally:
        kernel.shutdown()


def _run_notebook(tmp_path: Path, cells: list[str]) -> Path:
    """Run a notebook with nbclient on a 2-rank kernel, keeping provenance in its cells."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    path = tmp_path / "run.ipynb"
    write_kernel_spec(tmp_path / "kernels" / "prov-test", ranks=2)
    km = KernelManager(kernel_name="prov-test", kernel_spec_manager=KernelSpecManager(
        kernel_dirs=[str(tmp_path / "kernels")]))
    client = NotebookClient(nb, km=km, timeout=120, on_cell_executed=keep_in_cell,
                            resources={"metadata": {"path": str(tmp_path)}})
    try:
        client.execute(env={**os.environ, "JPY_SESSION_NAME": str(path)})
    finally:
        if km.has_kernel:
            km.shutdown_kernel()
    nbformat.write(nb, path)
    return path


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "hpckernel"), *args], capture_output=True, text=True,
                          timeout=120)


def test_a_hostile_git_config_runs_nothing(tmp_path: Path) -> None:
    """A notebook's directory whose .git/config names commands (fsmonitor, hooks, filters,
    an external diff): the commit is recorded and none of them runs."""
    project = tmp_path / "project"
    commit = _git_repo(project)
    marks = {name: tmp_path / f"PWNED-{name}" for name in ("fsmonitor", "hook", "filter",
                                                           "diff")}
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    for hook in ("post-checkout", "post-index-change", "reference-transaction",
                 "pre-commit", "fsmonitor-watchman"):
        (hooks / hook).write_text(f"#!/bin/sh\ntouch {marks['hook']}\n")
        (hooks / hook).chmod(0o755)
    config = {"core.fsmonitor": f"touch {marks['fsmonitor']}", "core.hooksPath": str(hooks),
              "filter.evil.clean": f"touch {marks['filter']}; cat",
              "filter.evil.process": f"touch {marks['filter']}",
              "diff.external": f"touch {marks['diff']}"}
    for name, value in config.items():
        subprocess.run(["git", "-C", str(project), "config", name, value], check=True)
    (project / ".gitattributes").write_text("* filter=evil\n")
    os.utime(project / "analysis.py")  # stat-dirty: git would run it through the filter
    kernel = Kernel(tmp_path, ranks=1, cwd=project,
                    env={"JPY_SESSION_NAME": str(project / "analysis.ipynb")})
    try:
        record = _record(kernel.ok("print(1)"))
    finally:
        kernel.shutdown()
    assert record["environment"]["git"] == {"commit": commit, "dirty": False}
    assert [m.name for m in marks.values() if m.exists()] == []
    # The trap is real: git itself springs it.
    subprocess.run(["git", "-C", str(project), "status", "--porcelain"], capture_output=True)
    assert marks["fsmonitor"].exists() and marks["filter"].exists()


def test_a_notebook_run_with_nbclient_keeps_provenance_in_its_cells(tmp_path: Path) -> None:
    path = _run_notebook(tmp_path, ["total = rank + 1", "%%local\nhub = 3", "print(total)"])
    saved = nbformat.read(path, as_version=4)
    records = [c.metadata["hpckernel"]["provenance"] for c in saved.cells]
    assert [r["kind"] for r in records] == ["px", "local", "px"]
    assert [r["code"] for r in records] == [c.source for c in saved.cells]
    assert all(r["status"] == "ok" for r in records)
    assert records[0]["ranks"] == {"ok": "0-1"}
    assert [r["execution_count"] for r in records] == [c.execution_count for c in saved.cells]

    shown = _cli("provenance", str(path))
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == f"3 cells, from the cells of {path}"
    assert lines[2].split()[:2] == ["In", "where"]
    assert "total = rank + 1" in lines[3] and "local:hub" in lines[4]
    as_json = _cli("provenance", "--json", str(path))
    assert [json.loads(line)["code"] for line in as_json.stdout.splitlines()] == [
        c.source for c in saved.cells]

    # A notebook saved without them (JupyterLab) falls back to the log beside it.
    for cell in saved.cells:
        del cell.metadata["hpckernel"]
    nbformat.write(saved, path)
    from_log = _cli("provenance", str(path))
    assert from_log.returncode == 0, from_log.stderr
    assert f"from the {tmp_path / 'run.provenance.jsonl'}" in from_log.stdout


def test_provenance_cli_bad_input(tmp_path: Path) -> None:
    missing = _cli("provenance", str(tmp_path / "nope.ipynb"))
    assert missing.returncode == 2 and f"no notebook at {tmp_path / 'nope.ipynb'}" in (
        missing.stderr)
    broken = tmp_path / "broken.ipynb"
    broken.write_text("{not json")
    bad = _cli("provenance", str(broken))
    assert bad.returncode == 2 and "is not a notebook" in bad.stderr
    empty = tmp_path / "empty.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), empty)
    none = _cli("provenance", str(empty))
    assert none.returncode == 2 and "holds no hpckernel provenance" in none.stderr


def test_records_of_earlier_versions_are_still_read(tmp_path: Path) -> None:
    """Logs written before records carried rank ranges list every rank (targets as a list,
    one state per rank): ``hpckernel provenance`` shows them the same way."""
    path = tmp_path / "old.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), path)
    old = {"id": "a1", "execution_count": 3, "kind": "px", "code": "if rank:\n    1 / 0",
           "targets": [0, 1, 2], "start": "2026-11-27T04:19:48.000001+00:00",
           "end": "2026-11-27T04:19:48.200001+00:00", "seconds": 0.2, "status": "error",
           "error": "rank 1-2: ZeroDivisionError: division by zero",
           "ranks": {"0": "ok", "1": "error", "2": "error"}, "size": 3}
    (tmp_path / "old.provenance.jsonl").write_text(json.dumps(old) + "\n")
    shown = _cli("provenance", str(path))
    assert shown.returncode == 0, shown.stderr
    row = shown.stdout.splitlines()[3]
    assert "px:0-2" in row and "ok 0; error 1-2" in row and "if rank:" in row
