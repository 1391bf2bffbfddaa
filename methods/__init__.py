"""Learning rules behind one interface, registered by name.

Every rule file is imported here explicitly, so ``list_rules()`` sees it as soon as it exists.
"""

from methods.base import LearningRule
from methods.registry import get_rule, list_rules, register

from methods import bp  # noqa: F401  (registers "bp")
from methods import spela  # noqa: F401  (registers "spela_o", "spela")
from methods import ff  # noqa: F401  (registers "ff")
from methods import spela_cnn  # noqa: F401  (registers "spela_cnn")
from methods import fa  # noqa: F401  (registers "fa")
from methods import sign_symmetry  # noqa: F401  (registers "sign_symmetry")
from methods import dfa  # noqa: F401  (registers "dfa")
from methods import drtp  # noqa: F401  (registers "drtp")
from methods import pepita  # noqa: F401  (registers "pepita")
from methods import forward_gradient  # noqa: F401  (registers "fg", its presets and grid cells)

__all__ = ["LearningRule", "get_rule", "list_rules", "register"]
