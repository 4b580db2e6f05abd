"""The incident use cases: alerts in, people acting on incidents.
"""
