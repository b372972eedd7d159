"""The hub's root error: every exception the hub raises for a user to read is a
``HubError`` (and also the builtin type that fits it, so existing ``except ValueError``
code keeps working). Its children live beside the code that raises them:

- ``LaunchError`` (``rank_launchers.py``): the ranks could not be started;
- ``RanksUnavailable`` (here): some target ranks are dead, stuck or starting;
- ``RemoteError`` (``requests.py``): code failed on some ranks;
- ``CellError`` (``px_controller.py``): a ``%%px`` cell that failed, as the notebook shows it;
- ``MagicUsageError`` (``cell_routing.py``), ``TransferError`` (``transfer.py``),
  ``OutputGone`` (``outputs.py``): bad options, values that cannot move, output not kept.
"""

from __future__ import annotations


class HubError(Exception):
    """Root of the hub's errors; the message says what to do."""


class RanksUnavailable(HubError, RuntimeError):
    """Some target ranks are dead or stuck; the message says what to do."""
