"""The `ackd` command line (`main`), its client of ackd's own API (`client`) and the local sink
that prints the pages posted to it (`sink`).
"""
