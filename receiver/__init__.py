"""ackd: the Alertmanager webhook receiver that does not let an alert go unanswered."""

__version__ = "0.1.0"
