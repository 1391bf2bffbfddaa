"""Fixed random feedback matrices (FA, DFA, DRTP, PEPITA's F), held as buffers: they move with the module, are saved.

Every matrix here is drawn once at construction from torch's global RNG (the run function seeds it) and never
trained. Initialisations, each named after the reference code it comes from:

* ``kaiming_uniform``: U(±scale·sqrt(6/fan_in)) with torch's fan_in of the tensor's own shape (size(1) times the
  receptive field). This is ``torch.nn.init.kaiming_uniform_`` as the DRTP repo (ChFrenkel/DirectRandomTargetProjection,
  ``module.py``) applies it: to a tensor shaped like W for FA (fan_in = W's inputs), and to [C, N_k] or [C, Ch, H, W]
  for DFA/DRTP (fan_in = the layer's width N_k or Ch·H·W).
* ``pepita_uniform``: PEPITA's F ∈ R^{d×C} with entries U(±scale·sqrt(6/d)), scale 0.05 (``Bstd``) in
  GiorgiaD/PEPITA (``main_pytorch.py`` and the CIFAR-10 tutorial).
* ``pepita_factorised``: F = B_0 B_1 ⋯ B_{L-1}, B_l ∈ R^{d_l×d_{l+1}} with entries N(0, σ²),
  σ = (scale·sqrt(2/d) / sqrt(∏ hidden widths))^{1/L} (Srinivasan et al. 2024, ravifrancesco/PEPITA ``RandomFeedback``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


def fan_in(shape: Sequence[int]) -> int:
    """torch's fan_in of a tensor of ``shape``: size(1) times the product of the remaining sizes."""
    if len(shape) < 2:
        raise ValueError(f"fan_in needs at least 2 dimensions, got shape {tuple(shape)}")
    return int(shape[1]) * math.prod(int(s) for s in shape[2:])


def kaiming_uniform(shape: Sequence[int], scale: float = 1.0) -> torch.Tensor:
    """U(±scale·sqrt(6/fan_in(shape))), i.e. ``kaiming_uniform_`` (a=0) times ``scale``."""
    bound = scale * math.sqrt(6.0 / fan_in(shape))
    return torch.empty(*shape).uniform_(-bound, bound)


def pepita_uniform(d: int, num_classes: int, scale: float = 0.05) -> torch.Tensor:
    """PEPITA's F ∈ R^{d×C}: U(±scale·sqrt(6/d)) (He-uniform limit of the input layer times ``Bstd``)."""
    bound = scale * math.sqrt(6.0 / d)
    return torch.empty(d, num_classes).uniform_(-bound, bound)


def pepita_factorised(dims: Sequence[int], scale: float = 0.05) -> list[torch.Tensor]:
    """Factors B_l ∈ R^{d_l×d_{l+1}} (dims = [d, hidden..., C]) whose product is F (Srinivasan et al. 2024).

    Each entry is N(0, σ²) with σ = (scale·sqrt(2/d) / sqrt(∏ hidden widths))^{1/L}, L = len(dims) - 1, so that the
    product has std about scale·sqrt(2/d) (the He-normal std of the input layer times ``Bstd``).
    """
    n = len(dims) - 1
    target = scale * math.sqrt(2.0 / dims[0])
    sigma = (target / math.sqrt(math.prod(dims[1:-1]))) ** (1.0 / n)
    return [torch.empty(a, b).normal_(0.0, sigma) for a, b in zip(dims[:-1], dims[1:])]


def project(signal: torch.Tensor, matrix: torch.Tensor, shape: Sequence[int] | None = None) -> torch.Tensor:
    """signal [B, C] @ matrix [C, ...] flattened, reshaped to [B, *matrix.shape[1:]] (or ``shape``).

    This is the DFA/DRTP projection of the DRTP repo (``function.py``): ``labels.mm(B.view(C, -1)).view(grad.shape)``.
    """
    out = signal @ matrix.reshape(matrix.shape[0], -1)
    return out.reshape(signal.shape[0], *(matrix.shape[1:] if shape is None else shape))


class FixedFeedback(nn.Module):
    """A named set of fixed feedback tensors, each a buffer (saved in the state dict, moved by ``.to``, not trained)."""

    def __init__(self) -> None:
        super().__init__()
        self._names: list[str] = []

    def add(self, name: str, tensor: torch.Tensor) -> torch.Tensor:
        """Register ``tensor`` as buffer ``name`` and return it."""
        if name in self._names:
            raise ValueError(f"feedback matrix {name!r} already exists")
        self.register_buffer(name, tensor.detach().clone())
        self._names.append(name)
        return getattr(self, name)

    def __getitem__(self, name: str) -> torch.Tensor:
        return getattr(self, name)

    def __contains__(self, name: str) -> bool:
        return name in self._names

    def names(self) -> list[str]:
        return list(self._names)

    def extra_repr(self) -> str:
        return ", ".join(f"{n}={tuple(getattr(self, n).shape)}" for n in self._names)
