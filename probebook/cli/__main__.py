"""``python -m probebook.cli ...``: the same as the `probebook` command."""

import sys

from . import main

sys.exit(main())
