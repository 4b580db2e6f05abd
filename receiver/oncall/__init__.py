"""On-call: schedules and working hours (who is on call, and when a team is at work), the
overrides and swaps people make at run time, the roster that lays them over the config's
schedules, and calendars of the shifts.
"""
