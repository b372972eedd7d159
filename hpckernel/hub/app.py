"""``python -m hpckernel.hub``: ipykernel's kernel app with the hub kernel class."""

from __future__ import annotations

import atexit

from ipykernel.kernelapp import IPKernelApp, kernel_aliases
from traitlets import Type

from .kernel import HubKernel


class HubApp(IPKernelApp):
    name = "hpckernel-hub"
    kernel_class = Type(HubKernel, klass=HubKernel).tag(config=True)  # type: ignore[assignment]

    aliases = {**kernel_aliases, "ranks": "RankLauncher.ranks"}  # type: ignore[assignment]

    def init_kernel(self) -> None:
        super().init_kernel()
        # Ranks must not outlive the hub, however it ends.
        atexit.register(self.kernel.stop_ranks)


def main() -> None:
    HubApp.launch_instance()
