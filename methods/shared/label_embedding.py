"""Labels written into the input (Forward-Forward, docs/methods.md section 4) and the negative labels.

The first C values of the flattened input (the first C pixels of the first channel's top row for 1- and
3-channel images alike) are overwritten by ``value`` * one-hot(label); a neutral input carries value/C in each
of them (loeweX's uniform label). Negatives carry a wrong label: uniform over the C-1 others (loeweX), or
"hard": sampled from a predictor's softmax with the true label masked out (the official-code port).
"""

from __future__ import annotations

import torch


def embed_labels(x: torch.Tensor, labels: torch.Tensor, num_classes: int, value: float = 1.0) -> torch.Tensor:
    """Flattened copy of ``x`` (B, D) whose first C values are value * one-hot(labels)."""
    z = x.flatten(1).clone()
    if z.shape[1] < num_classes:
        raise ValueError(f"cannot write {num_classes} labels into {z.shape[1]} input values")
    z[:, :num_classes] = 0.0
    z[torch.arange(z.shape[0], device=z.device), labels] = value
    return z


def embed_all_labels(x: torch.Tensor, num_classes: int, value: float = 1.0) -> torch.Tensor:
    """(C * B, D): every sample with every label, label-major (rows c*B .. c*B+B-1 carry label c)."""
    b = x.shape[0]
    labels = torch.arange(num_classes, device=x.device).repeat_interleave(b)
    return embed_labels(x.flatten(1).repeat(num_classes, 1), labels, num_classes, value)


def embed_neutral(x: torch.Tensor, num_classes: int, value: float = 1.0) -> torch.Tensor:
    """Flattened copy of ``x`` with value / C in each of the first C values (no label information)."""
    z = x.flatten(1).clone()
    z[:, :num_classes] = value / num_classes
    return z


def wrong_labels(labels: torch.Tensor, num_classes: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A label != the true one for every sample, uniform over the C-1 others: (y + U{1..C-1}) mod C."""
    if num_classes < 2:
        raise ValueError("negative labels need at least 2 classes")
    shift = torch.randint(1, num_classes, labels.shape, generator=generator, device=labels.device)
    return (labels + shift) % num_classes


def hard_wrong_labels(
    logits: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A wrong label per sample drawn from softmax(logits) with the true label's probability set to 0."""
    masked = logits.detach().float().clone()
    masked[torch.arange(labels.shape[0], device=labels.device), labels] = float("-inf")
    probs = torch.softmax(masked, dim=1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)
