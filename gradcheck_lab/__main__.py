"""``python -m gradcheck_lab``."""

import sys

from gradcheck_lab.cli.commands import main

sys.exit(main())
