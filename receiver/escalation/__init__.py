"""Escalation: the pure engine (who is paged, when), staleness, the durable timer and the
adapter that applies the engine's plans to the store.
"""
