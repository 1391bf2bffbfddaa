"""Per-kernel class groups, tiny per-kernel heads and voting (SPELA CNN, revised paper Sec. 3.5 / Alg. 2;
docs/methods.md s. 8).

Kernel j of a conv layer owns a random partition of the C classes into m_j groups (m_j and the membership vary
between kernels; kernel j gets the same partition in every conv layer). Its output map o_j is flattened,
L2-normalised and projected by its own one-layer MLP_j (weights N(0, 1), as Alg. 2 line 5) to d dimensions,
o''_j = σ(W_j ô_j + b_j), which learns SPELA-style: loss_j = -cos(o''_j, u_j(g)) for the fixed vector u_j(g) of the
group g holding the true class (the m_j group vectors of a kernel: ``class_vectors(m_j, d)``). To predict, every
kernel votes +1 for each class of the group whose vector its output is closest to (cosine); the class with the
most votes wins.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from methods.arch import Activation
from methods.shared.class_vectors import class_vectors


def random_partitions(
    num_kernels: int, num_classes: int, min_groups: int, max_groups: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """(K, C) group index of every class for every kernel: m_j ~ U{min..max} non-empty, disjoint groups covering
    all classes (a random permutation seeds one class per group, the rest go to uniformly drawn groups)."""
    if not 1 <= min_groups <= max_groups <= num_classes:
        raise ValueError(f"need 1 <= min_groups <= max_groups <= C={num_classes}, got {min_groups}, {max_groups}")
    out = torch.empty(num_kernels, num_classes, dtype=torch.long)
    for j in range(num_kernels):
        m = int(torch.randint(min_groups, max_groups + 1, (1,), generator=generator))
        perm = torch.randperm(num_classes, generator=generator)
        groups = torch.cat([torch.arange(m), torch.randint(0, m, (num_classes - m,), generator=generator)])
        out[j, perm] = groups
    return out


class KernelHeads(nn.Module):
    """K independent heads ô_j -> σ(W_j ô_j + b_j) in R^d, their group vectors and the vote."""

    def __init__(self, partitions: torch.Tensor, in_features: int, dim: int, act: str = "relu", seed: int = 0):
        super().__init__()
        k, c = partitions.shape
        self.num_kernels, self.num_classes, self.dim = k, c, dim
        self.weight = nn.Parameter(torch.randn(k, in_features, dim))  # MLP_j ~ N(0, 1) (Alg. 2, line 5)
        self.bias = nn.Parameter(torch.zeros(k, dim))
        self.act = Activation(act)
        groups = partitions.max(dim=1).values + 1  # m_j
        g_max = int(groups.max())
        vectors = torch.zeros(k, g_max, dim)
        for j in range(k):
            vectors[j, : groups[j]] = class_vectors(int(groups[j]), dim, seed)
        self.register_buffer("partitions", partitions.clone())
        self.register_buffer("group_vectors", vectors)
        """(K, G, d) unit vectors of every kernel's groups (zero rows past m_j)."""
        self.register_buffer("valid", torch.arange(g_max)[None, :] < groups[:, None])
        """(K, G): group g exists for kernel j."""
        self.register_buffer("members", F.one_hot(partitions, g_max).transpose(1, 2).float())
        """(K, G, C): class c is in group g of kernel j."""

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        """(B, K, H, W) kernel outputs -> (B, K, d) head outputs (each map L2-normalised first)."""
        f = maps.flatten(2)
        f = f / f.norm(dim=2, keepdim=True).clamp_min(1e-12)
        return self.act(torch.einsum("bki,kid->bkd", f, self.weight) + self.bias)

    def targets(self, y: torch.Tensor) -> torch.Tensor:
        """(B, K, d): for every sample and kernel, the vector of the group holding the true class."""
        g = self.partitions[:, y].T  # (B, K) group index of y_b in kernel j
        return self.group_vectors[torch.arange(self.num_kernels, device=y.device)[None, :], g]

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """sum_j mean_b -cos(o''_bj, u_j(group of y_b)): each kernel's own loss, summed."""
        return -F.cosine_similarity(out, self.targets(y), dim=2, eps=1e-8).mean(dim=0).sum()

    def votes(self, out: torch.Tensor) -> torch.Tensor:
        """(B, C) class scores: every kernel adds 1 to each class of its closest group (cosine)."""
        sims = torch.einsum("bkd,kgd->bkg", F.normalize(out, dim=2, eps=1e-12), self.group_vectors)
        sims = sims.masked_fill(~self.valid, float("-inf"))
        chosen = F.one_hot(sims.argmax(dim=2), self.group_vectors.shape[1]).to(out.dtype)  # (B, K, G)
        return torch.einsum("bkg,kgc->bc", chosen, self.members)
