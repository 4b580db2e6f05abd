"""Heartbeats, a dead man's switch: signals that must keep arriving (see domain.py)."""
