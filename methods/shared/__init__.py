"""Building blocks shared by several learning rules (one module each; no rule re-implements them)."""
