"""`python -m receiver`: the same command line as `ackd`."""

import sys

from receiver.app import hangups

hangups.defer()  # before the imports below: they take seconds on a loaded machine

from receiver.cli.main import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
