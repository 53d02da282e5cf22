"""``python -m imc`` is the ``spicebridge`` command."""

import sys

from imc.cli import main

sys.exit(main())
