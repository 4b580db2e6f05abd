"""The route tree (`tree`): which team, policy and severity an alert gets, and which group it
joins; built from the config's routes by config.build.routes.
"""
