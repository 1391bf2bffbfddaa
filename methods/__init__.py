"""Learning rules behind one interface, registered by name.

Every rule file is imported here explicitly, so ``list_rules()`` sees it as soon as it exists.
"""

from methods.base import LearningRule
from methods.registry import get_rule, list_rules, register

from methods import bp  # noqa: F401  (registers "bp")
from methods import fa  # noqa: F401  (registers "fa")
from methods import dfa  # noqa: F401  (registers "dfa")
from methods import drtp  # noqa: F401  (registers "drtp")
from methods import pepita  # noqa: F401  (registers "pepita")
from methods import forward_gradient  # noqa: F401  (registers "fg", its presets and grid cells)

__all__ = ["LearningRule", "get_rule", "list_rules", "register"]
