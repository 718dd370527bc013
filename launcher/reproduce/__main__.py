"""`python -m launcher.reproduce`."""

import sys

from launcher.reproduce.cli import main

sys.exit(main())
