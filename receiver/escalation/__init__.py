"""Escalation: who is paged for an incident, when, and what people's actions do.

Pure: `policy` (policies, steps, targets, the people they reach, the `Directory` protocol),
`plan` (state, deadlines, pages, the Plan of one decision), `engine` (the state machine),
`targets` (who a step reaches), `keys` (deadline keys), `codec` (the state as JSON),
`staleness` (stale_after). At the edge: `responder` applies Plans to the store, `timer` is
the durable timer loop.
"""
