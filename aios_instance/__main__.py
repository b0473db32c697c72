"""``python -m aios_instance``: the ``aios-instance`` command."""

import sys

from .cli import main

sys.exit(main())
