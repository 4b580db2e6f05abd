"""Maintenance windows: spans in which alerts are recorded and grouped but nobody is paged."""
