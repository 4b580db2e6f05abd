"""The `ackd` command line, its API client and the local sink.
"""
