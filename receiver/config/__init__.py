"""Configuration: the YAML with positions, its schema, every problem with file, line and key,
and the runtime objects built from it.
"""
