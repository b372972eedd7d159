"""`hpckernel install --slurm`: every option reaches the kernelspec's provisioner config;
every setting declared in `JobSettings` is an option of the argv bridge and reaches it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.provisioning import KernelProvisionerFactory

from hpckernel.bridge.argv_kernel import build_parser
from hpckernel.jobrequest import SETTING_NAMES, JobSettings
from hpckernel.jobrequest.options import from_args, to_argv
from hpckernel.jobrequest.sbatch import sbatch_options
from hpckernel.provisioner import SlurmProvisioner

BIN = Path(sys.executable).parent


def _install(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "hpckernel"), "install", "--slurm", "--prefix", str(tmp),
                           *args], capture_output=True, text=True, timeout=120)


def test_every_option_reaches_the_provisioner_config(tmp_path: Path) -> None:
    done = _install(tmp_path, "--name", "slurm-mpi", "--display-name", "Slurm MPI",
                    "--partition", "debug", "--nodes", "2", "--ntasks-per-node", "2",
                    "--time", "00:30:00", "--account", "A", "--qos", "Q", "--constraint", "C",
                    "--sbatch-arg=--exclusive", "--sbatch-arg=--mem=1G",
                    "--setup", "module load python", "--launch-timeout", "60",
                    "--login", "alice@login", "--ssh-arg=-F", "--ssh-arg=cfg",
                    "--python", "/opt/py/bin/python", "--export-env", "OMP_PLACES",
                    "--export-env", "MY_SETTING")
    assert done.returncode == 0, done.stderr
    kernels = tmp_path / "share/jupyter/kernels"
    spec = json.loads((kernels / "slurm-mpi/kernel.json").read_text())
    assert spec["display_name"] == "Slurm MPI"
    assert spec["interrupt_mode"] == "message"
    provisioner = spec["metadata"]["kernel_provisioner"]
    assert provisioner["provisioner_name"] == "slurm-provisioner"
    assert provisioner["config"] == {
        "nodes": 2, "ntasks_per_node": 2, "time": "00:30:00", "partition": "debug",
        "account": "A", "qos": "Q", "constraint": "C",
        "sbatch_args": ["--exclusive", "--mem=1G"], "setup": "module load python",
        "launch_timeout": 60.0, "login": "alice@login", "ssh_args": ["-F", "cfg"],
        "python": "/opt/py/bin/python", "export_env": ["OMP_PLACES", "MY_SETTING"]}
    # jupyter_client finds the provisioner through its entry point and applies the config.
    ksm = KernelSpecManager(kernel_dirs=[str(kernels)])
    kernel_spec = ksm.get_kernel_spec("slurm-mpi")
    instance = KernelProvisionerFactory.instance().create_provisioner_instance(
        "k1", kernel_spec, parent=None)
    assert type(instance).__name__ == "SlurmProvisioner"
    assert (instance.partition, instance.nodes, instance.ntasks_per_node, instance.login) == (
        "debug", 2, 2, "alice@login")
    assert instance.ranks == 4
    # Front ends without provisioners run argv: the launcher, with the same settings.
    assert spec["argv"][1:5] == ["-m", "hpckernel.bridge", "-f", "{connection_file}"]
    settings = from_args(build_parser().parse_args(["-f", "c.json", *spec["argv"][5:]]))
    assert {key: getattr(settings, key) for key in provisioner["config"]} == (
        provisioner["config"])


# Values a generated one would not pass the setting's own check with.
_VALID = {"time": "1-02:03:04", "login": "alice@login", "export_env": ["MY_SETTING"]}


def _changed(name: str) -> object:
    """A valid value of setting ``name`` other than its default."""
    default = getattr(JobSettings(), name)
    if name in _VALID:
        return _VALID[name]
    if isinstance(default, bool):
        return not default
    if isinstance(default, int | float):
        return default + 7
    if isinstance(default, list):
        return ["--x", f"--{name}"]
    return f"{name}-value"


def test_every_setting_is_an_option_of_the_bridge_and_a_provisioner_trait() -> None:
    """The traits are the declaration: a kernelspec's config of every setting, each off
    its default, reaches the provisioner as traits and the bridge as options, unchanged."""
    config = {name: _changed(name) for name in SETTING_NAMES}
    assert all(config[name] != getattr(JobSettings(), name) for name in SETTING_NAMES)
    argv = to_argv(config)
    settings = from_args(build_parser().parse_args(["-f", "c.json", *argv]))
    assert {name: getattr(settings, name) for name in SETTING_NAMES} == config
    provisioner = SlurmProvisioner(**config)
    assert {name: getattr(provisioner, name) for name in SETTING_NAMES} == config
    assert provisioner.snapshot().ranks == config["nodes"] * config["ntasks_per_node"]
    # What reaches sbatch's command line.
    options = sbatch_options(settings, job_name="j", output="o", walltime_warning=60)
    for option in (f"--nodes={config['nodes']}", f"--ntasks={settings.ranks}", "--overcommit",
                   f"--time={config['time']}", f"--partition={config['partition']}",
                   f"--account={config['account']}", f"--qos={config['qos']}",
                   f"--constraint={config['constraint']}", "--signal=B:USR1@60",
                   *config["sbatch_args"]):
        assert option in options


@pytest.mark.parametrize(("args", "message"), [
    (["--nodes", "0"], "must be at least 1, not 0"),
    (["--time", "soon"], "not a Slurm time string"),
    (["--ntasks-per-node", "-2"], "must be at least 1"),
])
def test_bad_options_are_refused_before_anything_is_written(
        tmp_path: Path, args: list[str], message: str) -> None:
    done = _install(tmp_path, *args)
    assert done.returncode == 2
    assert message in done.stderr
    assert not (tmp_path / "share").exists()


def test_bad_trait_values_in_a_kernelspec_are_named(tmp_path: Path) -> None:
    kernels = tmp_path / "kernels"
    assert _install(tmp_path).returncode == 0
    spec_file = tmp_path / "share/jupyter/kernels/slurm-mpi/kernel.json"
    spec = json.loads(spec_file.read_text())
    spec["metadata"]["kernel_provisioner"]["config"]["time"] = "whenever"
    kernels.mkdir()
    (kernels / "bad").mkdir()
    (kernels / "bad/kernel.json").write_text(json.dumps(spec))
    kernel_spec = KernelSpecManager(kernel_dirs=[str(kernels)]).get_kernel_spec("bad")
    with pytest.raises(Exception, match="bad walltime 'whenever'"):
        KernelProvisionerFactory.instance().create_provisioner_instance(
            "k2", kernel_spec, parent=None)


def test_a_login_that_looks_like_an_ssh_option_is_refused(tmp_path: Path) -> None:
    """`--login=-oProxyCommand=…` would make ssh run a command instead of logging in."""
    planted = tmp_path / "pwned"
    login = f"-oProxyCommand=touch {planted}"
    done = _install(tmp_path, f"--login={login}")
    assert done.returncode == 2
    assert "starts with '-'" in done.stderr and not (tmp_path / "share").exists()
    # A kernelspec edited by hand: refused when the kernel starts, by either path.
    assert _install(tmp_path).returncode == 0
    spec = json.loads((tmp_path / "share/jupyter/kernels/slurm-mpi/kernel.json").read_text())
    spec["metadata"]["kernel_provisioner"]["config"]["login"] = login
    (tmp_path / "kernels/bad").mkdir(parents=True)
    (tmp_path / "kernels/bad/kernel.json").write_text(json.dumps(spec))
    kernel_spec = KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")]).get_kernel_spec(
        "bad")
    with pytest.raises(Exception, match="starts with '-'"):
        KernelProvisionerFactory.instance().create_provisioner_instance(
            "k3", kernel_spec, parent=None)
    (tmp_path / "c.json").write_text("{}")
    bridge = subprocess.run([sys.executable, "-m", "hpckernel.bridge", "-f",
                             str(tmp_path / "c.json"), f"--login={login}"],
                            capture_output=True, text=True, timeout=60)
    assert bridge.returncode == 2 and "starts with '-'" in bridge.stderr
    assert not planted.exists()
