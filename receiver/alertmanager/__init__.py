"""Alertmanager's (and Grafana's) webhook formats, fingerprints and label matchers.
"""
