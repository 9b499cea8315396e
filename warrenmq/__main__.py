"""``python -m warrenmq``: the same entry point as the ``warrenmq`` console script."""

import sys

from warrenmq.cli import main

sys.exit(main())
