"""Inventory and agent configuration: typed models and a loader that names file, line and field."""

from callipso_agent.config.loader import load_config
from callipso_agent.config.models import AgentConfig, Credential, Device, Site

__all__ = ["AgentConfig", "Credential", "Device", "Site", "load_config"]
