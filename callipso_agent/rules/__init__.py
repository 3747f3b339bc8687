"""Rules: the YAML rule files, their schema, and the engine turning measurements and events into signals."""

from callipso_agent.rules.engine import RuleEngine
from callipso_agent.rules.inventory import Inventory
from callipso_agent.rules.loader import RuleSet, load_rules
from callipso_agent.rules.signal import Signal, problem_key

__all__ = ["Inventory", "RuleEngine", "RuleSet", "Signal", "load_rules", "problem_key"]
