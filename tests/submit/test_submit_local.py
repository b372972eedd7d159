"""`hpckernel submit --local`: a whole notebook run headless on local MPI ranks."""

from __future__ import annotations

from pathlib import Path

import nbformat

from .notebooks import hpckernel, outputs, parameterised, record, write_notebook


def _run_id(stdout: str) -> str:
    return stdout.splitlines()[0].strip()


def test_local_run_injects_parameters_and_keeps_outputs_and_provenance(tmp_path: Path
                                                                        ) -> None:
    nb = parameterised(tmp_path / "study.ipynb")
    (tmp_path / "params.yaml").write_text("n: 4\nlabel: from-file\nxs: [1, 2]\n")
    # papermill's ways, each overriding the one before: a YAML file, YAML text, -p NAME VALUE
    done = hpckernel("submit", str(nb), "--local", "--ranks", "2", "-f",
                     str(tmp_path / "params.yaml"), "-y", "label: tuned", "-p", "n", "5")
    assert done.returncode == 0, done.stderr
    run_id = _run_id(done.stdout)
    assert run_id.startswith("local-")
    out = tmp_path / f"study.run-{run_id}.ipynb"
    executed = nbformat.read(out, as_version=4)
    # the injected cell follows the parameters cell and overrides its defaults
    assert executed.cells[2].metadata["tags"] == ["injected-parameters"]
    assert executed.cells[2].source.splitlines()[1:] == ["n = 5", "label = 'tuned'",
                                                          "xs = [1, 2]"]
    texts = outputs(out)
    assert texts[0] == "[stdout:0-1] setup\n"
    assert texts[3] == "[stdout:0-1] tuned 15 local\n"  # 5 * (1 + 2)
    assert texts[4] == "hub done\n"
    records = [c.metadata["hpckernel"]["provenance"] for c in executed.cells]
    assert [r["status"] for r in records] == ["ok"] * 5
    assert records[3]["size"] == 2 and records[3]["ranks"] == {"ok": "0-1"}
    run = executed.metadata["hpckernel"]["run"]
    assert run["status"] == "ok"
    assert run["parameters"] == {"n": "5", "label": "'tuned'", "xs": "[1, 2]"}
    papermill = executed.metadata["papermill"]  # where papermill-aware tools look
    assert papermill["parameters"] == {"n": 5, "label": "tuned", "xs": [1, 2]}
    assert papermill["input_path"] == str(nb) and papermill["exception"] is False
    saved = record(tmp_path / f"study.run-{run_id}.json")
    assert saved["status"] == "ok" and saved["local"] is True and saved["ranks"] == 2
    # the hub's log beside the source notebook has the run's cells too
    assert (tmp_path / "study.provenance.jsonl").read_text().count('"status": "ok"') == 5
    assert nbformat.read(nb, as_version=4) == nbformat.read(nb, as_version=4)  # untouched
    assert "injected-parameters" not in nb.read_text()


def test_resubmit_repeats_a_run_with_its_settings_and_the_changes_given(tmp_path: Path
                                                                         ) -> None:
    nb = parameterised(tmp_path / "study.ipynb")
    first = hpckernel("submit", str(nb), "--local", "--ranks", "2", "-p", "n=2",
                      "-p", "label=first")
    assert first.returncode == 0, first.stderr
    first_id = _run_id(first.stdout)
    again = hpckernel("submit", "--resubmit", str(tmp_path / f"study.run-{first_id}.ipynb"),
                      "-p", "n=3")
    assert again.returncode == 0, again.stderr
    second_id = _run_id(again.stdout)
    assert second_id != first_id
    texts = outputs(tmp_path / f"study.run-{second_id}.ipynb")
    assert texts[3] == "[stdout:0-1] first 9 local\n"  # same ranks and label, new n
    saved = record(tmp_path / f"study.run-{second_id}.json")
    assert saved["parameters"] == {"n": "3", "label": "first"} and saved["ranks"] == 2


def test_a_failing_cell_still_writes_the_notebook_and_fails_the_run(tmp_path: Path) -> None:
    nb = write_notebook(tmp_path / "bad.ipynb", "print('before')",
                        "if rank == 1:\n    raise ValueError('broken input')",
                        "print('never')")
    done = hpckernel("submit", str(nb), "--local", "--ranks", "2",
                     "--output", str(tmp_path / "out-{run_id}.ipynb"))
    assert done.returncode == 1
    run_id = _run_id(done.stdout)
    texts = outputs(tmp_path / f"out-{run_id}.ipynb")
    assert texts[0] == "[stdout:0-1] before\n"
    assert texts[1] == "ValueError: rank 1: ValueError: broken input"
    assert texts[2] == ""  # not run after the error
    run = nbformat.read(tmp_path / f"out-{run_id}.ipynb", as_version=4).metadata["hpckernel"]
    assert run["run"]["status"] == "failed" and "broken input" in run["run"]["error"]
    assert record(tmp_path / f"bad.run-{run_id}.json")["status"] == "failed"
    assert "broken input" in done.stderr


def test_bad_input_is_refused_before_anything_runs(tmp_path: Path) -> None:
    (tmp_path / "broken.ipynb").write_text("{not a notebook")
    write_notebook(tmp_path / "empty.ipynb")
    nb = parameterised(tmp_path / "fine.ipynb")
    cases = [
        (["submit", str(tmp_path / "missing.ipynb"), "--local"],
         f"no notebook at {tmp_path / 'missing.ipynb'}"),
        (["submit", str(tmp_path / "broken.ipynb"), "--local"], "is not a valid notebook"),
        (["submit", str(tmp_path / "empty.ipynb"), "--local"], "has no code cells to run"),
        (["submit", str(nb), "--local", "-p", "2x=1"], "-p takes NAME VALUE"),
        (["submit", str(nb), "--local", "-p", "n"], "-p takes NAME VALUE"),
        (["submit", str(nb), "--local", "-f", str(tmp_path / "no.yaml")],
         "-f " + str(tmp_path / "no.yaml") + ": No such file"),
        (["submit", str(nb), "--local", "-y", "[1, 2]"], "-y must be a YAML mapping"),
        (["submit", str(nb), "--local", "-y", "n: {"], "-y is not YAML"),
        (["submit", str(nb), "--local", "-y", "day: 2024-01-02"], "not a plain value"),
        (["submit", str(nb), "--time", "soon"], "not a Slurm time string"),
        (["submit", "--resubmit", str(tmp_path / "fine.run-42.json")], "no run record at"),
        (["submit"], "one of the arguments notebook --resubmit is required"),
    ]
    before = sorted(p.name for p in tmp_path.iterdir())
    for args, message in cases:
        done = hpckernel(*args, timeout=120)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert message in done.stderr, (args, done.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


EAVESDROP = """%%local
import json, zmq
from ipykernel.kernelapp import IPKernelApp
info = json.load(open(IPKernelApp.instance().connection_file))
sub = zmq.Context.instance().socket(zmq.SUB)
sub.linger = 0
sub.setsockopt(zmq.SUBSCRIBE, b"")
sub.connect(f"tcp://{info['ip']}:{info['iopub_port']}")
heard = False
for i in range(30):
    print("tick", i, flush=True)
    if sub.poll(100):
        heard = True
        break
sub.close()
print("curve keys:", bool(info.get("curve_secretkey")), "plain client heard:", heard)
"""


def test_the_runs_channels_are_encrypted(tmp_path: Path) -> None:
    # A plain ZMQ client on the kernel's IOPub port (any user of the node can connect to
    # it) hears nothing while the cell prints.
    nb = write_notebook(tmp_path / "secret.ipynb", EAVESDROP)
    done = hpckernel("submit", str(nb), "--local", "--ranks", "1")
    assert done.returncode == 0, done.stderr
    text = outputs(tmp_path / f"secret.run-{_run_id(done.stdout)}.ipynb")[0]
    assert text.endswith("curve keys: True plain client heard: False\n"), text
