"""Explicit layer-by-layer pieces for rules with hand-written update formulas (FA, DFA, DRTP, PEPITA).

They work on the ``LayeredNet`` of ``mlp`` and ``cnn`` archs, where every block is a ``Layer``
(h_k = post(act(op(pre(h_{k-1}))))). Nothing here records an autograd graph: every function computes one layer's
quantity from tensors the rule already holds, so a rule states exactly what it stores and what flows where.

Notation (docs/methods.md): u_k = pre(h_{k-1}) (flattened input of ``op``, after any input dropout mask), a_k = op(u_k),
z_k = act(a_k) (after any output mask, before pooling), h_k = post(z_k).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from methods.arch import Layer, LayeredNet
from methods.errors import ArchError


@dataclass
class Trace:
    """What one layer's forward pass leaves behind (a rule keeps only the pieces its update needs)."""

    u: torch.Tensor
    """Input of ``op`` (h_{k-1} flattened for a Linear, times the input dropout mask if any)."""
    a: torch.Tensor
    """Pre-activation op(u)."""
    z: torch.Tensor
    """act(a), times the output mask if any (before pooling)."""
    h: torch.Tensor
    """Block output post(z)."""
    pool_idx: torch.Tensor | None
    """Argmax positions of a max-pool (to route a signal back through it)."""


def explicit_layers(net: LayeredNet) -> list[Layer]:
    """The net's blocks, checked to be ``Layer``s of a Linear or Conv2d (mlp and cnn archs)."""
    blocks = list(net.blocks)
    if not all(isinstance(b, Layer) and isinstance(b.op, (nn.Linear, nn.Conv2d)) for b in blocks):
        raise ArchError(f"{net.spec.short}: explicit update rules need a net of plain Linear/Conv2d layers (mlp, cnn)")
    return blocks


def layer_forward(
    layer: Layer, h: torch.Tensor, in_mask: torch.Tensor | None = None, out_mask: torch.Tensor | None = None
) -> Trace:
    """One layer's forward pass, keeping u, a, z, h and the max-pool positions."""
    u = layer.pre(h)
    if in_mask is not None:
        u = u * in_mask
    a = layer.op(u)
    z = layer.act(a)
    if out_mask is not None:
        z = z * out_mask
    idx = None
    if isinstance(layer.post, nn.MaxPool2d):
        p = layer.post
        out, idx = F.max_pool2d(z, p.kernel_size, p.stride, p.padding, p.dilation, p.ceil_mode, return_indices=True)
    else:
        out = layer.post(z)
    return Trace(u, a, z, out, idx)


def post_backward(layer: Layer, trace: Trace, g: torch.Tensor) -> torch.Tensor:
    """Route a signal on h_k back to z_k through the pooling (no weights involved)."""
    post = layer.post
    if isinstance(post, nn.Identity):
        return g
    if isinstance(
        post, nn.MaxPool2d
    ):  # each window's max position gets the signal (scatter_add: deterministic on GPU too)
        gz = torch.zeros_like(trace.z).flatten(2)
        return gz.scatter_add_(2, trace.pool_idx.flatten(2), g.flatten(2)).reshape(trace.z.shape)
    if isinstance(post, nn.AvgPool2d) and post.kernel_size == 2 and post.stride == 2:
        gz = torch.zeros_like(trace.z)
        H, W = g.shape[-2:]
        gz[..., : 2 * H, : 2 * W] = g.repeat_interleave(2, -2).repeat_interleave(2, -1) / 4.0
        return gz
    raise ArchError(f"no explicit backward for pooling {post}")


def weight_grads(op: nn.Module, u: torch.Tensor, delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Σ over the batch (and positions) of δ u^T: dW = δ^T u for a Linear, the correlation of δ with u for a Conv2d."""
    if isinstance(op, nn.Linear):
        dw = delta.t() @ u
        db = delta.sum(0) if op.bias is not None else None
    else:
        dw = torch.nn.grad.conv2d_weight(u, op.weight.shape, delta, op.stride, op.padding, op.dilation, op.groups)
        db = delta.sum((0, 2, 3)) if op.bias is not None else None
    return dw, db


def input_grad(op: nn.Module, weight: torch.Tensor, delta: torch.Tensor, u_shape: torch.Size) -> torch.Tensor:
    """δ sent down through ``weight`` (shaped like op.weight): δ·weight for a Linear, the transposed conv for a Conv2d.

    With ``weight = op.weight`` this is backprop's signal; with a fixed random B it is FA's.
    """
    if isinstance(op, nn.Linear):
        return delta @ weight
    return torch.nn.grad.conv2d_input(u_shape, weight, delta, op.stride, op.padding, op.dilation, op.groups)


def set_grads(op: nn.Module, dw: torch.Tensor, db: torch.Tensor | None, scale: float = 1.0) -> None:
    """Write ``scale``·dW (and ``scale``·db) into the op's ``.grad``, where the shared optimiser step reads them.
    ``dw`` and ``db`` are fresh tensors the caller hands over: they become the grads (scaled in place), so no
    weight-sized copy is made (bench/efficiency.py measures what an update holds)."""
    op.weight.grad = dw if scale == 1.0 else dw.mul_(scale)
    if op.bias is not None and op.bias.requires_grad and db is not None:
        op.bias.grad = db if scale == 1.0 else db.mul_(scale)


def output_error(out: torch.Tensor, out_act: str, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(δ_L, loss) of the output layer for the mean-reduced loss; δ_L is taken w.r.t. the pre-activation a_L.

    ``out_act='none'``: ``out`` are logits, y = softmax(a_L), L = CE averaged over B, δ_L = (y - y*)/B.
    ``out_act='sigmoid'``: ``out`` = σ(a_L), L = BCE averaged over the B·C elements (``F.binary_cross_entropy`` as in
    the DRTP repo), δ_L = (y - y*)/(B·C).  ``target`` is one-hot [B, C].
    """
    if out_act == "none":
        loss = F.cross_entropy(out, target.argmax(1))
        return (torch.softmax(out, dim=1) - target) / out.shape[0], loss
    if out_act == "sigmoid":
        loss = F.binary_cross_entropy(out.clamp(1e-7, 1 - 1e-7), target)
        return (out - target) / target.numel(), loss
    raise ArchError(f"out_act={out_act!r}: explicit output error needs out_act=none (softmax + CE) or sigmoid (BCE)")


def prediction(out: torch.Tensor, out_act: str) -> torch.Tensor:
    """The output y of e = y - y*: softmax of the logits (out_act=none) or the sigmoid output itself."""
    return torch.softmax(out, dim=1) if out_act == "none" else out
