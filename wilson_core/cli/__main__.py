"""``python -m wilson_core.cli``: the same as the ``wilson`` command."""

import sys

from wilson_core.cli import main

if __name__ == "__main__":
    sys.exit(main())
