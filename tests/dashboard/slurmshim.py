"""A directory of Slurm commands for a kernel's PATH: each logs its call, then runs the real one.

`SlurmShim(where)` writes one small bash script per Slurm command found on PATH (squeue,
sacct, scontrol, sbatch, scancel, sinfo, srun, ...). Each appends a line (time, command,
arguments, tab-separated) to `log` and execs the real command; with `fail={"squeue": (N,
text)}` the first N calls print `text` (a message recorded from real Slurm) on stderr and exit
1 instead, as a busy slurmctld would make them.
"""

from __future__ import annotations

import os
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

COMMANDS = ("squeue", "sacct", "scontrol", "sbatch", "scancel", "sinfo", "srun", "salloc",
            "sacctmgr", "sstat", "sprio", "sshare", "sattach", "sbcast", "sdiag", "strigger")


@dataclass(frozen=True)
class Call:
    at: float
    argv: tuple[str, ...]

    @property
    def command(self) -> str:
        return self.argv[0]


class SlurmShim:
    def __init__(self, where: Path, fail: dict[str, tuple[int, str]] | None = None) -> None:
        self.bin = where / "bin"
        self.bin.mkdir(parents=True)
        self.log = where / "calls.log"
        self.log.touch()
        for name in COMMANDS:
            real = shutil.which(name)
            if real is None:
                continue
            failing = ""
            if fail and name in fail:
                times, text = fail[name]
                message = where / f"{name}.message"
                message.write_text(text)
                count = where / f"{name}.failed"
                failing = (f"n=$(cat {count} 2>/dev/null || echo 0)\n"
                           f"if [ \"$n\" -lt {times} ]; then\n"
                           f"    echo $((n + 1)) > {count}\n"
                           f"    cat {shlex.quote(str(message))} >&2\n"
                           "    exit 1\n"
                           "fi\n")
            script = self.bin / name
            script.write_text(
                "#!/bin/bash\n"
                f"line=\"$(date +%s.%N)\t{name}\"\n"
                "for a in \"$@\"; do line+=$'\\t'\"$a\"; done\n"
                # One write per call: lines of concurrent calls do not interleave.
                f"printf '%s\\n' \"$line\" >> {shlex.quote(str(self.log))}\n"
                f"{failing}"
                f"exec {shlex.quote(real)} \"$@\"\n")
            script.chmod(0o755)

    def env(self) -> dict[str, str]:
        """The kernel's environment changes: the shim first on PATH."""
        return {"PATH": f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}"}

    def calls(self, since: float = 0.0, until: float = float("inf")) -> list[Call]:
        found = []
        for line in self.log.read_text().splitlines():
            at, *argv = line.split("\t")
            if since <= float(at) < until:
                found.append(Call(float(at), tuple(argv)))
        return found
