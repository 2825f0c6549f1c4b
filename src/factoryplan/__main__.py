"""``python -m factoryplan``: the same command line as the ``factoryplan`` script."""

import sys

from factoryplan.cli import main

sys.exit(main())
