"""Declarative SNMP device profiles (``collectors/*.yaml``): schema, loading, detection, evaluation."""

from callipso_agent.profiles.loader import ProfileSet, load_profiles
from callipso_agent.profiles.schema import MetricSpec, Profile

__all__ = ["MetricSpec", "Profile", "ProfileSet", "load_profiles"]
