"""The web page: server-rendered HTML for people working incidents (see pages.py)."""
