"""Learning rules behind one interface, registered by name.

Every rule module is named in ``RULE_MODULES``; the registry imports them the first time a rule is looked up
(``get_rule``, ``list_rules``), so importing this package (or ``methods.errors``) stays cheap: no torch until a rule
is needed.
"""

RULE_MODULES = (
    "bp",
    "spela",
    "ff",
    "spela_cnn",
    "fa",
    "sign_symmetry",
    "kolen_pollack",
    "sign_concordant",
    "dfa",
    "drtp",
    "pepita",
    "forward_gradient",
    "mono_forward",
    "cafo",
    "pc",
    "target_prop",
)
"""The modules of ``methods`` that register rules (a new rule: its module name here)."""

__all__ = ["LearningRule", "RULE_MODULES", "get_rule", "list_rules", "register"]


def __getattr__(name: str):
    if name == "LearningRule":
        from methods.base import LearningRule

        return LearningRule
    if name in ("get_rule", "list_rules", "register"):
        from methods import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'methods' has no attribute {name!r}")
