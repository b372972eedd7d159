"""Kernelspec install (hpckernel CLI and jupyter kernelspec) and the headless demo."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

from hpckernel.resources import template_dir

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "hpckernel"), *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)


def _spec(root: Path, name: str) -> dict:
    return json.loads((root / "share/jupyter/kernels" / name / "kernel.json").read_text())


def test_install_prefix_passes_every_flag(tmp_path: Path) -> None:
    done = _cli("install", "--prefix", str(tmp_path), "--ranks", "3", "--name", "my-mpi",
                "--display-name", "My MPI", "--env", "FOO=bar", "--env", "EMPTY=",
                "--env", "SPACED", "as ipykernel takes it", "--env", "EQ", "a=b")
    assert done.returncode == 0, done.stderr
    assert "Installed kernelspec 'my-mpi'" in done.stdout
    spec = _spec(tmp_path, "my-mpi")
    assert spec["display_name"] == "My MPI"
    assert Path(spec["argv"][0]).parent == BIN  # this environment's Python
    assert "--RankLauncher.ranks=3" in spec["argv"]
    assert spec["env"] == {"FOO": "bar", "EMPTY": "", "SPACED": "as ipykernel takes it",
                           "EQ": "a=b"}
    assert spec["interrupt_mode"] == "message"


def test_install_default_display_name_mentions_rank_count(tmp_path: Path) -> None:
    assert _cli("install", "--prefix", str(tmp_path)).returncode == 0
    assert _spec(tmp_path, "mpi-local")["display_name"] == "MPI (local)"
    assert _cli("install", "--prefix", str(tmp_path), "--ranks", "8").returncode == 0
    assert _spec(tmp_path, "mpi-local")["display_name"] == "MPI (local), 8 ranks"


def test_install_user_and_sys_prefix(tmp_path: Path) -> None:
    data = tmp_path / "data"
    done = _cli("install", "--user", env={"JUPYTER_DATA_DIR": str(data)})
    assert done.returncode == 0, done.stderr
    assert (data / "kernels/mpi-local/kernel.json").exists()
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    # A second environment that imports hpckernel from this one: --sys-prefix is its own.
    site = next(p for p in sys.path if p.endswith("site-packages"))
    done = subprocess.run([str(venv / "bin/python"), "-m", "hpckernel", "install",
                           "--sys-prefix"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": f"{REPO}:{site}"})
    assert done.returncode == 0, done.stderr
    assert (venv / "share/jupyter/kernels/mpi-local/kernel.json").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--ranks", "0"], "must be at least 1, not 0"),
    (["--ranks", "two"], "'two' is not a whole number"),
    (["--env", "NOVALUE"], "--env takes NAME VALUE"),
    (["--env", "=x"], "--env takes NAME VALUE"),
    (["--user", "--sys-prefix"], "not allowed with argument"),
])
def test_install_bad_input(tmp_path: Path, args: list[str], message: str) -> None:
    done = _cli("install", "--prefix", str(tmp_path), *args)
    assert done.returncode == 2
    assert message in done.stderr
    assert not (tmp_path / "share").exists()


def _as_nobody(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``hpckernel ARGS`` as the unprivileged user ``nobody``, with ``home`` its own. It
    keeps only the right to read and search directories (the venv's Python may live in
    root's 0700 home), none to write where it may not."""
    return subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
         "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search",
         str(BIN / "hpckernel"), *args],
        capture_output=True, text=True, timeout=120, env={
            **os.environ, "HOME": str(home), "JUPYTER_DATA_DIR": str(home / "jupyter")})


@pytest.fixture
def nobody_home() -> Iterator[Path]:
    """A home directory of ``nobody``'s own (pytest's temp dirs are root's, 0700)."""
    home = Path(tempfile.mkdtemp(prefix="hpckernel-nobody-"))
    shutil.chown(home, "nobody")
    yield home
    shutil.rmtree(home)


def test_install_without_permission_says_what_to_use_instead(nobody_home: Path) -> None:
    for where, advice in (([], "use --user to install for yourself, or --sys-prefix to "
                           "install into this Python environment"),
                          (["--sys-prefix"], "use --user to install for yourself")):
        done = _as_nobody(nobody_home, "install", *where)
        assert done.returncode == 2, (where, done.stdout, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
        assert lines[0].startswith("hpckernel: cannot write to /"), lines
        assert lines[0].endswith(f"(permission denied): {advice}"), lines
    done = _as_nobody(nobody_home, "install", "--user", "--env", "A", "1")
    assert done.returncode == 0, done.stderr
    spec = json.loads((nobody_home / "jupyter/kernels/mpi-local/kernel.json").read_text())
    assert spec["env"] == {"A": "1"}


def test_jupyter_kernelspec_install_of_the_template_runs_cells(tmp_path: Path) -> None:
    template = template_dir("kernelspec") / "mpi-local"
    assert template == REPO / "kernelspec" / "mpi-local"
    done = subprocess.run([str(BIN / "jupyter"), "kernelspec", "install", str(template),
                           "--prefix", str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    kernels = tmp_path / "share/jupyter/kernels"
    km = KernelManager(kernel_name="mpi-local",
                       kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]))
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        texts: list[str] = []
        reply = kc.execute_interactive(
            "print(size)", timeout=60,
            output_hook=lambda m: texts.append(m["content"].get("text", "")))
        assert reply["content"]["status"] == "ok"
        assert "".join(texts).endswith("[stdout:0-3] 4\n")
    finally:
        kc.stop_channels()
        km.shutdown_kernel()


def test_demo_runs_the_example_notebook_headless(tmp_path: Path) -> None:
    out = tmp_path / "demo.ipynb"
    done = subprocess.run([str(BIN / "hpckernel"), "demo", "--ranks", "3", "--output",
                           str(out)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[stdout:0-2] sum of all ranks: 3" in done.stdout
    assert "[stdout:0-1] only ranks 0 and 1 run this" in done.stdout
    assert "rank * scale: [0, 10, 20]" in done.stdout
    assert f"Executed notebook written to {out}" in done.stdout
    nb = json.loads(out.read_text())
    outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c["outputs"]]
    assert not [o for o in outputs if o["output_type"] == "error"]
    assert "hello from rank 2 of 3" in json.dumps(outputs)


def test_demo_with_a_missing_notebook_says_so(tmp_path: Path) -> None:
    done = _cli("demo", "--notebook", str(tmp_path / "nope.ipynb"))
    assert done.returncode == 2
    assert "no notebook at" in done.stderr
