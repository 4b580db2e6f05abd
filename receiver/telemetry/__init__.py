"""What ackd tells its operators about itself: Prometheus metrics (`metrics`) and the JSON log
format (`logformat`).
"""
