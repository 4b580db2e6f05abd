"""The daemon: built from config, started, reloaded and stopped.
"""
