"""What ackd tells its operators about itself: Prometheus metrics and log formats.
"""
