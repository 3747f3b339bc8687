"""callipso-agent: supervision and automation agent for an enterprise telephony estate."""

__version__ = "0.1.0"
