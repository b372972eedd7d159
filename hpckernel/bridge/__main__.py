"""``python -m hpckernel.bridge -f CONNECTION_FILE [Slurm options]`` (see ``argv_kernel``)."""

import sys

from .argv_kernel import main

sys.exit(main())
