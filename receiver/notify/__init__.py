"""Outgoing notifications: the Notifier interface and its Apprise adapter, what a page says,
signed links, and contacts.
"""
