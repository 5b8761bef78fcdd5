"""``python -m asp``: the same as the ``asp`` command."""
import sys

from asp.cli import main

sys.exit(main())
