"""What one webhook's alerts do to incident groups (`grouping`): deduplication by episode,
grouping, the digests of what open incidents hold and the memo of bodies already routed.
"""
