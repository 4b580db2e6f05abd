"""What one webhook's alerts do to incident groups: deduplication, grouping and the resend shortcut.
"""
