"""The `ackd` command line (`main`), its client of ackd's own API (`client`) and the local sink
that prints the pages posted to it (`sink`).
"""

import sys
from pathlib import Path

from receiver.app import hangups

if Path(sys.argv[0]).name == "ackd":
    # The console script imports this package first: hold a SIGHUP from here, before the
    # seconds of imports and config load (receiver.app.hangups), not in a library import.
    hangups.defer()
