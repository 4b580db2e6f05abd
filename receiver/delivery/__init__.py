"""Delivery from the durable outbox: `noise` (bundles, rate limits) and `plan` decide a pass
purely; `dispatch` runs the loop, with `render` (the message), `lanes` (one send per URL at a
time) and `events` (the delivery timeline events).
"""
