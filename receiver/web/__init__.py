"""aiohttp adapters: every handler parses, calls one use case, and renders; nothing decides."""
