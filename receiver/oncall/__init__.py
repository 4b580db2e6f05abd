"""On-call schedules and working hours: who is on call, and when a team is at work.
"""
