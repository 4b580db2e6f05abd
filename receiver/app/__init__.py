"""The daemon: built from config, started, reloaded and stopped (`daemon`), and the stores by
name (`stores`). With config.build, the only code that builds a Config from a file.
"""
