"""Configuration: the YAML with positions (yamlsource), its schema (schema, problems), the
validated Config (model), the builder from file to Config (build/, imported only by the app and
the CLI), and the coordinator a reload goes through (coordinator).
"""
