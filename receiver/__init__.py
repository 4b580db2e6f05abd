"""ackd: the Alertmanager webhook receiver that does not let an alert go unanswered."""

import enum as _enum
import sys as _sys

__version__ = "0.1.0"

# On Python 3.11 every `Kind.MEMBER` lookup goes through EnumType.__getattr__'s slot, five
# times the cost of a plain class attribute (about 90 such lookups per webhook, 4% of the
# event loop's instructions on the ingest path). It is a fallback that never answers: every
# member is in its class's __dict__, which is why Python 3.12 removed it.
if _sys.version_info < (3, 12) and "__getattr__" in vars(_enum.EnumType):
    delattr(_enum.EnumType, "__getattr__")
