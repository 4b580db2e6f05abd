"""The nouns every package speaks: alerts, incidents, time, durations, errors, input limits.

Imports nothing else of receiver.
"""
