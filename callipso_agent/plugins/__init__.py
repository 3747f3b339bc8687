"""Nagios / Centreon check plugins (``callipso-check``) that read the agent's API: no extra device polling."""
