"""Delivery from the durable outbox: noise control (bundles, rate limits) and the dispatcher.
"""
