"""`python -m receiver`: the same command line as `ackd`."""

import sys

from receiver.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
