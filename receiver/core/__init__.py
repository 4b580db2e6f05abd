"""The nouns every package speaks: alerts, incidents, message reasons and people's actions,
time (and `wakeup`, the background loops' sleep), durations, errors, input limits.

Imports nothing else of receiver.
"""
