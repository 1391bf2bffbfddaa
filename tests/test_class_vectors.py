"""Class vectors on the sphere (SPELA's priors): unit norm, low Thomson energy, the exact simplex, caching."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from methods.shared.class_vectors import class_vectors, random_vectors, thomson_energy


def _energy_by_hand(v: torch.Tensor) -> float:
    v = v.double()
    return sum(1.0 / (v[i] - v[j]).norm().item() for i, j in itertools.combinations(range(v.shape[0]), 2))


@pytest.mark.parametrize(
    "c,n,method",
    [
        (10, 1000, "auto"),
        (10, 34, "auto"),
        (34, 34, "auto"),
        (10, 9, "auto"),
        (10, 3, "auto"),
        (7, 5, "energy"),
        (2, 1, "auto"),
    ],
)
def test_unit_norm_and_lower_energy_than_random(c, n, method):
    v = class_vectors(c, n, seed=1, method=method)
    assert v.shape == (c, n)
    assert torch.allclose(v.norm(dim=1), torch.ones(c), atol=1e-6)
    assert thomson_energy(v).item() == pytest.approx(_energy_by_hand(v), rel=1e-9)
    if c > 2:  # two points: every antipodal pair is optimal, random ones are not; the inequality holds below
        for s in range(3):
            assert _energy_by_hand(v) < _energy_by_hand(random_vectors(c, n, seed=s))
            assert _energy_by_hand(v) < _energy_by_hand(torch.nn.functional.normalize(torch.randn(c, n), dim=1))


@pytest.mark.parametrize("c,n", [(10, 1000), (10, 34), (10, 9), (3, 2), (34, 34), (2, 5)])
def test_simplex_case_is_exact(c, n):
    """C <= width + 1: every pair of vectors has cosine exactly -1/(C-1) and they sum to zero."""
    v = class_vectors(c, n, seed=3).double()
    cos = v @ v.T
    off = cos[~torch.eye(c, dtype=torch.bool)]
    assert torch.allclose(off, torch.full_like(off, -1.0 / (c - 1)), atol=1e-6)
    assert v.sum(0).abs().max() < 1e-5


def test_energy_descent_reaches_the_simplex_and_known_thomson_minima():
    """The numerical minimiser (used when C > width + 1) finds the simplex where it is the answer, and known
    Thomson minima: the octahedron (6 points, E = 3/sqrt(2)*4 + 3/2) and the icosahedron (12 points,
    E = 49.165253058)."""
    v = class_vectors(6, 8, seed=0, method="energy").double()
    off = (v @ v.T)[~torch.eye(6, dtype=torch.bool)]
    assert torch.allclose(off, torch.full_like(off, -0.2), atol=1e-4)
    octahedron = 12 / math.sqrt(2) + 3 / 2  # 12 edges at distance sqrt(2), 3 antipodal pairs at distance 2
    assert _energy_by_hand(class_vectors(6, 3, seed=0)) == pytest.approx(octahedron, abs=1e-6)
    assert _energy_by_hand(class_vectors(12, 3, seed=0)) == pytest.approx(49.165253058, abs=1e-6)


def test_computed_once_per_key_and_seeded():
    a, b = class_vectors(10, 34, seed=5), class_vectors(10, 34, seed=5)
    assert torch.equal(a, b) and a.data_ptr() != b.data_ptr()  # a cached copy, so callers cannot alter the cache
    a.zero_()
    assert torch.equal(class_vectors(10, 34, seed=5), b)
    assert not torch.allclose(class_vectors(10, 34, seed=6), b)
    assert torch.allclose(random_vectors(10, 34, seed=2).norm(dim=1), torch.ones(10), atol=1e-6)
