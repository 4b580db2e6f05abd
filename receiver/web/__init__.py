"""aiohttp adapters: every handler parses, calls one use case, and renders; nothing decides.

Handlers: `webhook` (alerts in; `encoding` inflates a compressed body with a bound), `api`
(incidents), `actions` (ack and the rest, by API and signed link), `schedules` (overrides,
who is on call, calendars), `learning` (post-mortems, reports), `health` (health, readiness,
metrics, reload), `ui/` (the web page). Shared: `services` (what handlers reach), `access`
and `auth` (who may call), `responses` (JSON bodies).
"""
