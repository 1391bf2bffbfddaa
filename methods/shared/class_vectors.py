"""Fixed class vectors ("symmetric vectors", neural priors) on the unit sphere, and read-outs against them.

SPELA (arXiv 2402.09769, Sec. 3.2) gives every layer of width n one fixed unit vector per class, placed by
simulating C electrons on the sphere S^{n-1} until the electrostatic energy

    E(V) = sum_{i<j} 1 / ||v_i - v_j||                                   (Thomson problem)

stops decreasing. When C <= n + 1 the minimiser is the regular simplex (pairwise cosine -1/(C-1)); that is
a mathematical fact, so ``class_vectors`` builds it in closed form there (a random rotation of the simplex,
exact to float precision) and runs the energy descent only when C > n + 1. Both are cached per
(C, width, seed, method), so each set is computed once per process.
"""

from __future__ import annotations

import functools
from typing import Literal

import torch
import torch.nn.functional as F

Method = Literal["auto", "simplex", "energy"]


def thomson_energy(v: torch.Tensor) -> torch.Tensor:
    """E(V) = sum over unordered pairs i<j of 1/||v_i - v_j|| (rows of ``v`` are the points)."""
    d = torch.cdist(v.double(), v.double())
    i, j = torch.triu_indices(v.shape[0], v.shape[0], offset=1)
    return (1.0 / d[i, j]).sum()


def _orthonormal_columns(n: int, k: int, g: torch.Generator) -> torch.Tensor:
    """A random n x k matrix with orthonormal columns (QR of a Gaussian matrix, signs fixed)."""
    q, r = torch.linalg.qr(torch.randn(n, k, generator=g, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r)).where(torch.diagonal(r) != 0, torch.ones(()).double())


def _simplex(c: int, n: int, g: torch.Generator) -> torch.Tensor:
    """C vertices of a regular simplex centred at 0 on S^{n-1}, randomly rotated; needs C <= n + 1."""
    if c == 1:
        return F.normalize(torch.randn(1, n, generator=g, dtype=torch.float64), dim=1)
    centred = torch.eye(c, dtype=torch.float64) - 1.0 / c  # rows e_i - 1/C: pairwise cos -1/(C-1)
    basis = torch.linalg.qr(centred[:, : c - 1])[0]  # orthonormal basis of the sum-zero subspace (C x (C-1))
    coords = F.normalize(centred @ basis, dim=1)  # the simplex in C-1 coordinates
    return coords @ _orthonormal_columns(n, c - 1, g).T


def _energy_descent(c: int, n: int, g: torch.Generator, iters: int, tol: float) -> torch.Tensor:
    """Minimise E on the sphere by Riemannian gradient descent with a backtracking step (float64)."""
    v = F.normalize(torch.randn(c, n, generator=g, dtype=torch.float64), dim=1)
    step = 0.1
    energy = thomson_energy(v)
    for _ in range(iters):
        v_req = v.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(thomson_energy(v_req), v_req)
        grad = grad - (grad * v).sum(1, keepdim=True) * v  # tangent component: the radial part only rescales
        gnorm = grad.norm()
        if gnorm < 1e-12:
            break
        while True:
            cand = F.normalize(v - step * grad / gnorm, dim=1)
            cand_energy = thomson_energy(cand)
            if cand_energy < energy or step < 1e-12:
                break
            step *= 0.5
        if cand_energy >= energy:
            break
        converged = (energy - cand_energy) <= tol * energy
        v, energy = cand, cand_energy
        step *= 1.5
        if converged:
            break
    return v


@functools.cache
def _cached(c: int, n: int, seed: int, method: str, iters: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if method == "simplex" or (method == "auto" and c <= n + 1):
        if c > n + 1:
            raise ValueError(f"a regular simplex of {c} points needs width >= {c - 1}, got {n}")
        v = _simplex(c, n, g)
    else:
        v = _energy_descent(c, n, g, iters=iters, tol=1e-12)
    return v.float()


def class_vectors(
    num_classes: int, width: int, seed: int = 0, method: Method = "auto", iters: int = 5000
) -> torch.Tensor:
    """(C, width) unit vectors minimising the Thomson energy on S^{width-1}; computed once per arguments.

    method: auto (closed-form simplex when C <= width + 1, else energy descent), simplex, or energy
    (always the numerical descent; used to check that it reaches the simplex).
    """
    if num_classes < 1 or width < 1:
        raise ValueError(f"need num_classes >= 1 and width >= 1, got {num_classes}, {width}")
    if width == 1 and num_classes > 2:
        raise ValueError("on S^0 (width 1) there are only 2 distinct unit vectors")
    return _cached(int(num_classes), int(width), int(seed), method, int(iters)).clone()


def random_vectors(num_classes: int, width: int, seed: int = 0) -> torch.Tensor:
    """(C, width) vectors drawn from N(0, 1) and scaled to unit norm (SPELA's random-vector ablation, Sec. 4.4.2)."""
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(num_classes, width, generator=g, dtype=torch.float64), dim=1).float()


def cosine_scores(h: torch.Tensor, vectors: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """cos(h_b, v_c) for every sample b and class c: (B, C). ``vectors`` rows are unit norm."""
    return (h / h.norm(dim=1, keepdim=True).clamp_min(eps)) @ vectors.T


def euclidean_scores(h: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """-||h_b - v_c||: the nearest class vector scores highest (B, C)."""
    return -torch.cdist(h, vectors)
