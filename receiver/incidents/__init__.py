"""The incident layer. Pure: `facts` (one reading of an incident's record), `postmortem`
(drafts) and `reports` (MTTA/MTTR and the rest). Use cases at the edge: `service` (a webhook's
alerts in: route, group, write, observe) and `drills` (test incidents).
"""
