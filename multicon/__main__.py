"""``python -m multicon``: the ``multicon`` command."""

import sys

from multicon.cli import main

if __name__ == "__main__":
    sys.exit(main())
