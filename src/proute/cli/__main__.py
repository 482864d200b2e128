"""``python -m proute.cli ARGS``: the ``proute`` command."""

import sys

from proute.cli import main

if __name__ == "__main__":
    sys.exit(main())
