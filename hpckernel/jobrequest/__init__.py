"""What a Slurm kernel (or ``hpckernel submit``'s run) asks of Slurm, in one place.

- ``settings.py``: ``JobSettings``, every setting declared once as a trait (default, help,
  check), and ``SettingError``;
- ``options.py``: the command-line options made from those traits (the argv bridge,
  ``hpckernel install --slurm``, ``hpckernel submit``);
- ``sbatch.py``: the request as sbatch's options.

Whether a request fits its partition is asked of Slurm by ``hpckernel.slurm.check_partition``.
"""

from .settings import SETTING_NAMES, JobSettings, SettingError, settings_from

__all__ = ["SETTING_NAMES", "JobSettings", "SettingError", "settings_from"]
