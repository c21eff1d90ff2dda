"""`python -m mixscribe ...` is `mixscribe ...` (for clusters whose PATH lacks the console script)."""

import sys

from mixscribe.cli import main

sys.exit(main())
