"""The factored sampler of random weight-space guesses (``guess_sampler=fast``, methods/shared/projection.py
``FactoredGaussian``): the estimate's mean and covariance match the per-sample draws' (closed forms), a wrong
estimator fails the same check, both derivative paths agree on one guess, run identities, and seeded runs learn."""

from __future__ import annotations

import copy

import pytest
import torch

from methods.registry import get_rule
from methods.shared import projection as pj


def _exact_moments(t: pj.PerSample, normalize: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and covariance of ĝ = Σ_n c_n V_n under dense per-sample N(0, I) guesses in D dimensions.

    Unnormalised: E[(tᵀv) v] = t, E[(tᵀv)² v vᵀ] = ‖t‖² I + 2 t tᵀ. Normalised (ε = 0): c_n V_n = ⟨t_n, θ⟩ θ with θ
    uniform on the unit sphere, E = t/D, E[(tᵀθ)² θ θᵀ] = (‖t‖² I + 2 t tᵀ) / (D (D + 2)). Samples are independent."""
    tn = t.to_dense().reshape(t.batch, -1)
    d = tn.shape[1]
    eye = torch.eye(d, dtype=torch.float64)
    mean, cov = torch.zeros(d, dtype=torch.float64), torch.zeros(d, d, dtype=torch.float64)
    for row in tn.double():
        second = row.dot(row) * eye + 2 * torch.outer(row, row)
        m = row / d if normalize else row
        second = second / (d * (d + 2)) if normalize else second
        mean += m
        cov += second - torch.outer(m, m)
    return mean, cov


def _draws(x, t, out, normalize, n, variant=None) -> torch.Tensor:
    rows = []
    for _ in range(n):
        g = pj.FactoredGaussian(x, out)
        if variant == "independent_norm":  # the remainder's χ² norms drawn apart from the remainder itself (wrong)
            h, g2 = pj.FactoredGaussian(x, out), copy.copy(g)
            g2.Lf, g2.L = h.Lf, h.L
            sq = g2.sqnorm()
        else:
            sq = g.sqnorm()
        if variant == "drop_remainder":  # only the drawn columns a_nj, as if V_n were its tangent-seen part (wrong)
            g.L, g.Lf = g.L * 0, g.Lf * 0 if g.Lf is not None else None
        rows.append(g.weighted_sum(pj.coefficients(g.dot(t), sq if normalize else None, normalize, 0.0)).flatten())
    return torch.stack(rows).double()


def _errors(samples, mean, cov) -> tuple[float, float]:
    """Largest |mean error| in standard errors, and ‖Ĉ - C‖_F / ‖C‖_F."""
    se = cov.diagonal().sqrt() / len(samples) ** 0.5
    return ((samples.mean(0) - mean).abs() / se).max().item(), ((torch.cov(samples.T) - cov).norm() / cov.norm()).item()


@pytest.mark.parametrize(
    "shape",
    [
        (3, 4, 6),  # B, out, in: nested columns (out >= B) and a Bartlett factor of the complement (D = 12 >= B)
        (4, 1, 5),  # out < B: every a_nj drawn; D = 1 < B: the complement's Gram from a drawn B x D factor
    ],
)
@pytest.mark.parametrize("normalize", [True, False])
def test_factored_gaussian_has_the_per_sample_estimators_mean_and_covariance(shape, normalize):
    """6000 seeded draws: mean within 4.5 standard errors per coordinate and covariance within 12% (Frobenius) of
    the closed forms of dense per-sample draws (here 3-10%: the sampling error at this size). Dropping the remainder
    (70% off) or drawing its norms independently of it (17% off) fails the same bar."""
    batch, out, n_in = shape
    torch.manual_seed(0)
    x = torch.randn(batch, n_in)
    t = pj.PerSample.outer(torch.randn(batch, out), x)
    mean, cov = _exact_moments(t, normalize)
    mean_err, cov_err = _errors(_draws(x, t, out, normalize, 6000), mean, cov)
    assert mean_err < 4.5 and cov_err < 0.12, (mean_err, cov_err)
    if shape == (3, 4, 6):
        wrong = ["drop_remainder"] + (["independent_norm"] if normalize else [])
        for variant in wrong:
            m_err, c_err = _errors(_draws(x, t, out, normalize, 6000, variant), mean, cov)
            assert m_err > 4.5 or c_err > 0.12, (variant, m_err, c_err)


def test_factored_guess_covers_inputs_wider_than_the_batch_and_narrower():
    """in <= B (no complement) and in > B give finite estimates of the right shape; the tangent is V_n x_n."""
    torch.manual_seed(0)
    for batch, out, n_in in ((6, 5, 4), (4, 7, 9), (2, 3, 3)):
        x = torch.randn(batch, n_in)
        g = pj.FactoredGaussian(x, out)
        assert g.tangent().shape == (batch, out) and g.sqnorm().shape == (batch,)
        est = g.weighted_sum(torch.randn(batch))
        assert est.shape == (out, n_in) and torch.isfinite(est).all()


@pytest.mark.parametrize("guess", ["gaussian", "rademacher"])
@pytest.mark.parametrize("projection", ["normalized", "unnormalized"])
def test_fast_sampler_jvp_and_backward_paths_agree_on_one_guess(guess, projection):
    cfg = {"guess": guess, "guess_sampler": "fast", "projection": projection, "num_guesses": 2}
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(5, 1, 3, 3, generator=g), torch.randint(0, 3, (5,), generator=g)
    grads = []
    for derivative in ("jvp", "backward"):
        torch.manual_seed(0)
        rule = get_rule("fg").create({**cfg, "derivative": derivative}, "mlp:6-5-C", (1, 3, 3), 3, epochs=1)
        torch.manual_seed(1)
        rule.compute_updates(x, y)
        grads.append([p.grad.clone() for p in rule.parameters()])
    for a, b in zip(*grads):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6 * max(1.0, b.abs().max().item()))


def test_sampler_joins_the_run_identity_only_where_it_changes_the_numbers():
    from methods.config import config_to_dict

    def ident(name, **kw):
        return config_to_dict(get_rule(name).Config(**kw), identity=True)

    assert ident("fg_gaussian")["guess_sampler"] == "auto"  # auto = fast for gaussian: new numbers, new hash
    assert "guess_sampler" not in ident("fg_gaussian", guess_sampler="exact")  # the per-sample draws: old hash
    assert "guess_sampler" not in ident("fg_rademacher")  # auto = exact for rademacher: numbers and hash unchanged
    assert ident("fg_rademacher", guess_sampler="fast")["guess_sampler"] == "fast"
    assert "guess_sampler" not in ident("fg_local")
    from bench.errors import ConfigError

    with pytest.raises(ConfigError, match="guess_sampler"):
        get_rule("fg").Config(guess="local", guess_sampler="fast")


def test_exact_sampler_draws_a_dense_guess_per_sample():
    rule = get_rule("fg_gaussian").create({"guess_sampler": "exact"}, "mlp:6-5-C", (1, 3, 3), 3, epochs=1)
    fast = get_rule("fg_gaussian").create({}, "mlp:6-5-C", (1, 3, 3), 3, epochs=1)
    from methods.forward_gradient import _Taps

    x = torch.randn(5, 1, 3, 3)
    for r, kind in ((rule, pj.PerSample), (fast, pj.FactoredGaussian)):
        with _Taps(r._block_mods[0]) as taps:
            hk = r.net.blocks[0](x)
        weight = r.guess.weight(r, 0, taps, hk, None, None)
        assert isinstance(weight[0], kind) and isinstance(weight[1], pj.PerSample)  # the bias: per sample always


@pytest.mark.parametrize("name,overrides", [("fg_gaussian", {}), ("fg_rademacher", {"guess_sampler": "fast"})])
def test_fast_sampler_runs_learn_on_fashion_mnist(name, overrides, fmnist_root, tmp_path):
    from bench.run import RunConfig, run

    res = run(
        RunConfig(
            method=name,
            arch="mlp:64-64-C",
            epochs=2,
            limit_train=2000,
            limit_eval=1000,
            data_dir=str(fmnist_root),
            runs_dir=str(tmp_path),
            wandb="disabled",
            progress=False,
            rule=overrides,
        )
    )
    assert res.status == "completed" and res.test_acc > 0.55, res.test_acc
