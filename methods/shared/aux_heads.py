"""Auxiliary classifier heads attached to a block's output (local losses; Belilovsky et al.; Fournier et al. App. A.2).

Three kinds, as in ForwardLocalGradient's ``model/auxnet.py`` (read, not copied):
  * ``linear``: [BN] + adaptive average pool to pool x pool + flatten + Linear to C (feature maps);
    a plain Linear to C on vectors;
  * ``mlp``: adaptive average pool to pool x pool + flatten (feature maps), then ``depth`` x
    (Linear [+ BN] + ReLU) of ``width`` units, then Linear to C;
  * ``cnn`` (feature maps only): 1x1 conv to ``width`` channels [+ BN] + ReLU, ``depth`` x (3x3 stride-2 conv
    [+ BN] + ReLU), adaptive average pool to pool x pool, flatten, Linear to C.
The authors' heads always have BatchNorm; here it is optional (``bn``), so heads on BatchNorm-free networks keep
every sample independent of the others (which forward-mode per-sample directional derivatives need).
``reinit_`` is the authors' ``init_weights(mode='kaiming-uniform')``: kaiming-uniform weights, biases 0.01
(the NTK guess re-draws its head with it every step).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

KINDS = ("linear", "mlp", "cnn")


def make_aux_head(
    kind: str, in_shape: Sequence[int], num_classes: int, *, width: int, depth: int = 3, pool: int = 2, bn: bool = False
) -> nn.Module:
    """A head mapping a block output of shape ``in_shape`` (no batch dim) to ``num_classes`` scores."""
    if kind not in KINDS:
        raise ValueError(f"unknown auxiliary head {kind!r}; choose one of {', '.join(KINDS)}")
    maps = len(in_shape) == 3
    if not maps and len(in_shape) != 1:
        raise ValueError(
            f"auxiliary heads take vectors or C x H x W maps, got a block output of shape {tuple(in_shape)}"
        )
    layers: list[nn.Module] = []
    if kind == "linear":
        if maps:
            c = in_shape[0]
            layers += ([nn.BatchNorm2d(c)] if bn else []) + [
                nn.AdaptiveAvgPool2d(pool),
                nn.Flatten(),
                nn.Linear(c * pool * pool, num_classes),
            ]
        else:
            layers.append(nn.Linear(in_shape[0], num_classes))
    elif kind == "mlp":
        if maps:
            layers += [nn.AdaptiveAvgPool2d(pool), nn.Flatten()]
            d = in_shape[0] * pool * pool
        else:
            d = in_shape[0]
        for _ in range(depth):
            layers += [nn.Linear(d, width, bias=not bn)] + ([nn.BatchNorm1d(width)] if bn else []) + [nn.ReLU()]
            d = width
        layers.append(nn.Linear(d, num_classes))
    else:
        if not maps:
            raise ValueError("a cnn auxiliary head needs feature maps (C x H x W), not vectors; use linear or mlp")
        c = in_shape[0]
        layers += [nn.Conv2d(c, width, 1, bias=not bn)] + ([nn.BatchNorm2d(width)] if bn else []) + [nn.ReLU()]
        for _ in range(depth):
            layers += (
                [nn.Conv2d(width, width, 3, 2, 1, bias=not bn)] + ([nn.BatchNorm2d(width)] if bn else []) + [nn.ReLU()]
            )
        layers += [nn.AdaptiveAvgPool2d(pool), nn.Flatten(), nn.Linear(width * pool * pool, num_classes)]
    head = nn.Sequential(*layers)
    reinit_(head)
    return head


@torch.no_grad()
def reinit_(head: nn.Module) -> nn.Module:
    """Kaiming-uniform weights and 0.01 biases for Linear/Conv layers, unit scale and zero shift for BatchNorm."""
    for m in head.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.kaiming_uniform_(m.weight)
            if m.bias is not None:
                m.bias.fill_(0.01)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            if m.affine:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            m.reset_running_stats()
    return head
