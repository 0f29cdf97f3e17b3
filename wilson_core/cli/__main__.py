"""``python -m wilson_core.cli``: the same as the ``wilson`` command."""

import sys

from wilson_core.cli import main

sys.exit(main())
