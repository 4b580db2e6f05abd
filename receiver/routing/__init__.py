"""The route tree: which team, policy and severity an alert gets, and which group it joins.
"""
