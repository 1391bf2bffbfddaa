"""Forward gradient (Fournier et al. 2023): projection algebra, hand-derived updates, JVP = two-backward, statistics
of random guesses, greedy local learning, ResNet-18 in every mode, the alignment diagnostic, learning on real data."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench.errors import ArchError, ConfigError
from methods.registry import get_rule
from methods.shared import projection as pj
from methods.shared.alignment import GradientAlignment

GUESSES = ("gaussian", "rademacher", "local", "ntk", "fixed_ntk")


def _fg(overrides: dict, arch: str = "mlp:5-C", in_shape=(1, 2, 2), classes: int = 3, seed: int = 0):
    torch.manual_seed(seed)
    return get_rule("fg").create(overrides, arch, in_shape, classes, epochs=1)


def _grads(rule) -> list[torch.Tensor]:
    return [p.grad.clone() for p in rule.parameters() if p.requires_grad]


def _step(rule, x, y, seed: int = 1) -> list[torch.Tensor]:
    for p in rule.parameters():
        p.grad = None
    torch.manual_seed(seed)  # same guesses for every path
    rule.update_step(x, y)  # compute_updates + the base's diagnostics, as the loop runs it
    return _grads(rule)


def _data(n=6, in_shape=(1, 2, 2), classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *in_shape, generator=g), torch.randint(0, classes, (n,), generator=g)


# --------------------------------------------------------------------------- projection algebra
def test_projecting_a_target_on_itself_returns_the_target():
    torch.manual_seed(0)
    d, x = torch.randn(4, 3), torch.randn(4, 5)
    dense = torch.randn(4, 3, 5)
    for t in (pj.PerSample.outer(d, x), pj.PerSample(dense)):
        assert torch.allclose(pj.project(t, t), t.to_dense().sum(0), atol=1e-6)
    h = torch.randn(4, 2, 3, 3)
    assert torch.allclose(pj.project_activity(h, h), h, atol=1e-6)


def test_per_sample_algebra_matches_dense_formulas():
    torch.manual_seed(0)
    d, x, v = torch.randn(4, 3), torch.randn(4, 5), torch.randn(4, 3, 5)
    t = pj.PerSample.outer(d, x)
    tn = torch.einsum("no,ni->noi", d, x)  # t_n = d_n x_n^T, by hand
    assert torch.allclose(t.dot(pj.PerSample(v)), (tn * v).sum((1, 2)), atol=1e-5)
    assert torch.allclose(t.sqnorm(), (tn**2).sum((1, 2)), atol=1e-5)
    c = torch.randn(4)
    assert torch.allclose(pj.PerSample(v).weighted_sum(c), (c[:, None, None] * v).sum(0), atol=1e-5)
    proj = pj.project(t, pj.PerSample(v), normalize=True)
    coef = (tn * v).sum((1, 2)) / ((v**2).sum((1, 2)) + 1e-16)
    assert torch.allclose(proj, (coef[:, None, None] * v).sum(0), atol=1e-5)
    proj_u = pj.project(t, pj.PerSample(v), normalize=False)
    assert torch.allclose(proj_u, ((tn * v).sum((1, 2))[:, None, None] * v).sum(0), atol=1e-4)


@pytest.mark.parametrize(
    "module,shape",
    [
        (nn.Linear(5, 3), (4, 5)),
        (nn.Conv2d(2, 3, 3, stride=2, padding=1), (4, 2, 6, 6)),
        (nn.BatchNorm2d(3), (4, 3, 5, 5)),
    ],
)
def test_per_sample_contributions_sum_to_the_batch_gradient(module, shape):
    """Σ_n t_n = ∂L/∂θ, and a module's output tangent along v equals autograd's directional derivative."""
    torch.manual_seed(0)
    if isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight)
        nn.init.normal_(module.bias)
    x = torch.randn(shape)
    out = module(x)
    w = torch.randn_like(out)
    loss = (out * w).sum() + (out**2).sum()  # couples samples through BatchNorm's statistics
    params = dict(module.named_parameters())
    grads = dict(zip(params, torch.autograd.grad(loss, list(params.values()), retain_graph=True)))
    delta = torch.autograd.grad(loss, out)[0]
    contrib = pj.contributions(module, x, delta)
    for name in params:
        assert torch.allclose(contrib[name].to_dense().sum(0), grads[name], atol=1e-4), name
    # tangent: for a per-sample direction v_n, d out_n / dε = what out_n becomes when sample n uses θ + ε v_n
    for name, p in params.items():
        v = torch.randn(shape[0], *p.shape)
        tangent = pj.param_tangent(module, name, x, pj.PerSample(v))
        for n in range(shape[0]):
            saved = p.detach().clone()
            with torch.no_grad():
                p.add_(v[n])
                plus = module(x)[n]
                p.copy_(saved)
                base = module(x)[n]
            assert torch.allclose(tangent[n], plus - base, atol=1e-3), (name, n)


# --------------------------------------------------------------------------- hand-derived updates
@pytest.mark.parametrize("derivative", ["jvp", "backward"])
@pytest.mark.parametrize("space", ["weight", "activity"])
def test_local_guess_global_target_update_matches_hand_derivation(derivative, space):
    """mlp:5-C with a linear aux head: ĝ = Σ_n ⟨t_n, v_n⟩/‖v_n‖² v_n, every quantity written out by hand."""
    rule = _fg({"guess": "local", "target": "global", "space": space, "aux": "linear", "derivative": derivative})
    x, y = _data()
    rule.compute_updates(x, y)
    W1, b1 = rule.net.blocks[0].op.weight.detach(), rule.net.blocks[0].op.bias.detach()
    W2, b2 = rule.net.blocks[1].op.weight.detach(), rule.net.blocks[1].op.bias.detach()
    A, c = rule.heads[0][0].weight.detach(), rule.heads[0][0].bias.detach()
    Y, B = F.one_hot(y, 3).float(), len(y)
    x0 = x.flatten(1)
    a1 = x0 @ W1.T + b1
    h1, m1 = a1.clamp_min(0), (a1 > 0).float()
    e = (torch.softmax(h1 @ W2.T + b2, 1) - Y) / B  # ∂L/∂logits
    eh = (torch.softmax(h1 @ A.T + c, 1) - Y) / B  # ∂ℓ/∂(head logits)
    if space == "weight":
        dt, dg = (e @ W2) * m1, (eh @ A) * m1  # target and guess at the pre-activation
        cw = (dt * dg).sum(1) * (x0 * x0).sum(1) / ((dg * dg).sum(1) * (x0 * x0).sum(1) + 1e-16)
        cb = (dt * dg).sum(1) / ((dg * dg).sum(1) + 1e-16)
        gW1, gb1 = (cw[:, None] * dg).T @ x0, (cb[:, None] * dg).sum(0)
    else:
        t, g = e @ W2, eh @ A  # at the block output h1
        gh = ((t * g).sum(1) / ((g * g).sum(1) + 1e-16))[:, None] * g
        gW1, gb1 = (gh * m1).T @ x0, (gh * m1).sum(0)
    assert torch.allclose(rule.net.blocks[0].op.weight.grad, gW1, atol=1e-6)
    assert torch.allclose(rule.net.blocks[0].op.bias.grad, gb1, atol=1e-6)
    assert torch.allclose(rule.net.blocks[1].op.weight.grad, e.T @ h1, atol=1e-6)  # last block: true gradient
    assert torch.allclose(rule.net.blocks[1].op.bias.grad, e.sum(0), atol=1e-6)
    assert torch.allclose(rule.heads[0][0].weight.grad, eh.T @ h1, atol=1e-6)  # the head learns its own loss
    assert torch.allclose(rule.heads[0][0].bias.grad, eh.sum(0), atol=1e-6)


def test_local_target_with_local_guess_is_greedy_local_learning():
    """Both the preset and the projection path (guess = target) give each block ∇ℓ_k on a detached input."""
    torch.manual_seed(0)
    rule = get_rule("local_learning").create({"aux": "mlp", "aux_width": 6}, "mlp:7-5-C", (1, 2, 2), 3, epochs=1)
    x, y = _data()
    rule.compute_updates(x, y)
    got = _grads(rule)
    # by hand: block k and head k trained on CE(head_k(block_k(h_{k-1}.detach())), y)
    blocks, heads = rule.net.blocks, rule.heads
    expected, h = {}, x
    for k in range(2):
        hk = blocks[k](h.detach())
        ps = list(blocks[k].parameters()) + list(heads[k].parameters())
        for p, g in zip(ps, torch.autograd.grad(F.cross_entropy(heads[k](hk), y), ps)):
            expected[p] = g
        h = hk
    ps = list(blocks[2].parameters())
    for p, g in zip(ps, torch.autograd.grad(F.cross_entropy(blocks[2](h.detach()), y), ps)):
        expected[p] = g
    params = [p for p in rule.parameters() if p.requires_grad]
    for p, g in zip(params, got):
        assert torch.allclose(g, expected[p], atol=1e-6)
    for p in rule.parameters():
        p.grad = None
    rule._backward_step(x, y)  # the generic projection of the local target on the same local guess
    for p, g in zip(params, _grads(rule)):
        assert torch.allclose(g, expected[p], rtol=1e-4, atol=1e-7)


# --------------------------------------------------------------------------- forward mode = two-backward simulation
@pytest.mark.parametrize("guess", GUESSES)
@pytest.mark.parametrize(
    "target,space", [("global", "weight"), ("global", "activity"), ("local", "weight"), ("local", "activity")]
)
def test_jvp_path_equals_two_backward_path_on_the_same_guess(guess, target, space):
    if guess == "local" and target == "local":
        pytest.skip("local learning: no projection to compute")
    k = 2 if guess in ("gaussian", "rademacher", "ntk") else 1
    cfg = {
        "guess": guess,
        "target": target,
        "space": space,
        "num_guesses": k,
        "aux": "mlp",
        "aux_width": 4,
        "aux_depth": 1,
    }
    for arch, in_shape in (("mlp:6-5-C", (1, 3, 3)), ("cnn:3,fc=4", (1, 6, 6))):
        x, y = _data(5, in_shape)
        fwd = _step(_fg({**cfg, "derivative": "jvp"}, arch, in_shape), x, y)
        bwd = _step(_fg({**cfg, "derivative": "backward"}, arch, in_shape), x, y)
        for a, b in zip(fwd, bwd):
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-6 * max(1.0, b.abs().max().item())), (arch, a, b)


def test_random_guess_jvp_path_runs_no_backward_pass_below_the_last_block():
    rule = _fg({"guess": "gaussian", "derivative": "jvp"}, "mlp:6-5-C", (1, 3, 3))
    x, y = _data(5, (1, 3, 3))
    grad_modes, fired = [], []
    for block in rule.net.blocks[:-1]:
        block.register_forward_pre_hook(lambda m, a: grad_modes.append(torch.is_grad_enabled()))
        for p in block.parameters():
            p.register_hook(lambda g: fired.append(g))
    rule.compute_updates(x, y)
    assert grad_modes and not any(grad_modes), "blocks below the last recorded an autograd graph"
    assert not fired, "a backward pass reached a block below the last"
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in rule.net.parameters())


# --------------------------------------------------------------------------- statistics of random guesses
def _true_grads(rule, x, y) -> list[torch.Tensor]:
    params = list(rule.net.blocks[0].parameters())
    return list(torch.autograd.grad(F.cross_entropy(rule.net(x), y), params))


@pytest.mark.parametrize("guess", ["gaussian", "rademacher"])
@pytest.mark.parametrize("projection", ["unnormalized", "normalized"])
def test_average_of_many_random_estimates_converges_to_the_true_gradient(guess, projection):
    """E[v v^T] = I and E[v v^T/‖v‖²] = I/d: the average of many estimates is t (unnormalised) or t/d per tensor."""
    rule = _fg(
        {"guess": guess, "projection": projection, "num_guesses": 3000, "derivative": "backward"}, "mlp:4-C", (1, 2, 3)
    )
    x, y = _data(3, (1, 2, 3))
    _step(rule, x, y)
    for p, t in zip(rule.net.blocks[0].parameters(), _true_grads(rule, x, y)):
        est = p.grad * (t.numel() if projection == "normalized" else 1)
        assert F.cosine_similarity(est.flatten(), t.flatten(), dim=0) > 0.97
        assert (est - t).norm() < 0.25 * t.norm()


def test_single_gaussian_estimate_has_the_expected_positive_correlation():
    """One sample, one guess: cos(ĝ, t) = |⟨t̂, v⟩|/‖v‖, whose mean is Γ(d/2) / (√π Γ((d+1)/2)) for v ~ N(0, I_d)."""
    rule = _fg({"guess": "gaussian", "derivative": "backward"}, "mlp:4-C", (1, 2, 3))
    x, y = _data(1, (1, 2, 3))
    t = _true_grads(rule, x, y)[0]
    d = t.numel()
    expected = math.exp(math.lgamma(d / 2) - math.lgamma((d + 1) / 2)) / math.sqrt(math.pi)
    cos = []
    for i in range(600):
        _step(rule, x, y, seed=100 + i)
        cos.append(F.cosine_similarity(rule.net.blocks[0].op.weight.grad.flatten(), t.flatten(), dim=0).item())
    cos = torch.tensor(cos)
    assert (cos > 0).all()  # one sample: the estimate is ⟨t, v⟩² / ‖v‖² t̂-aligned, never against t
    assert abs(cos.mean().item() - expected) < 0.025, (cos.mean().item(), expected)


# --------------------------------------------------------------------------- ResNet-18, every mode
@pytest.mark.parametrize("arch", ["resnet18", "resnet18,blocks=16,skip=0"])
def test_resnet18_trains_in_every_mode(arch, monkeypatch):
    """8 and 16 blocks, every guess x target x space (aux kinds cycled): one SGD step on 32x32 inputs, batch 2."""
    import copy

    import methods.base
    from methods.arch import ArchSpec, build_network

    torch.manual_seed(0)
    net = build_network(ArchSpec.parse(arch), (3, 32, 32), 10)  # built once; every rule gets a copy
    monkeypatch.setattr(methods.base, "build_network", lambda *a: copy.deepcopy(net))
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(2, 3, 32, 32, generator=g), torch.tensor([1, 7])
    modes = [
        (gs, t, s)
        for gs in GUESSES
        for t in ("global", "local")
        for s in ("weight", "activity")
        if not (gs == "local" and t == "local" and s == "activity")
    ]
    for i, (guess, target, space) in enumerate(modes):
        rule = _fg(
            {
                "guess": guess,
                "target": target,
                "space": space,
                "aux": ("mlp", "cnn", "linear")[i % 3],
                "aux_width": 8,
                "aux_depth": 1,
            },
            arch,
            (3, 32, 32),
            10,
        )
        opt = torch.optim.SGD([p for p in rule.parameters() if p.requires_grad], lr=1e-3)
        out = rule.compute_updates(x, y)
        assert torch.isfinite(out["loss"])
        for n, p in rule.named_parameters():
            if p.requires_grad:
                assert p.grad is not None and torch.isfinite(p.grad).all(), (guess, target, space, n)
        opt.step()
        assert not torch.equal(net.blocks[0][0].weight, rule.net.blocks[0][0].weight), (guess, target, space)
    assert len(modes) == 19
    rule.eval()
    assert rule.exit_scores(x)["out"].shape == (2, 10)


def test_jvp_is_refused_where_batchnorm_couples_samples():
    with pytest.raises(ArchError, match="BatchNorm"):
        _fg({"guess": "gaussian", "derivative": "jvp"}, "resnet18", (3, 32, 32), 10)
    assert not _fg({"guess": "gaussian"}, "resnet18,blocks=16,skip=0", (3, 32, 32), 10).use_jvp  # auto: backward
    assert _fg({"guess": "gaussian"}, "cnn:4", (1, 8, 8), 10).use_jvp


# --------------------------------------------------------------------------- the alignment diagnostic
def test_alignment_diagnostic_is_the_cosine_with_the_true_gradient_and_free_when_off(monkeypatch):
    rule = _fg({"guess": "ntk", "align_every": 2}, "mlp:6-5-C", (1, 3, 3))
    x, y = _data(5, (1, 3, 3))
    _step(rule, x, y)
    est = torch.cat([p.grad.flatten() for p in rule.net.blocks[0].parameters()])
    params = list(rule.net.parameters())
    true = torch.autograd.grad(F.cross_entropy(rule.net(x), y), params)
    tru0 = torch.cat([g.flatten() for g in true[:2]])
    _step(rule, x, y)  # step 1: not logged (every 2)
    row = rule.epoch_metrics()
    assert set(row) == {"align/b0", "align/b1", "align/b2"}
    assert row["align/b0"] == pytest.approx(F.cosine_similarity(est, tru0, dim=0).item(), abs=1e-5)
    assert row["align/b2"] == pytest.approx(1.0, abs=1e-6)  # the last block gets its true gradient
    assert rule.epoch_metrics() == {}  # reset for the next epoch
    off = _fg({"guess": "ntk"}, "mlp:6-5-C", (1, 3, 3))
    monkeypatch.setattr(GradientAlignment, "record", lambda *a: pytest.fail("diagnostic ran while off"))
    _step(off, x, y)
    assert off.epoch_metrics() == {}


# --------------------------------------------------------------------------- configuration
def test_invalid_configurations_fail_clearly():
    with pytest.raises(ConfigError, match="deterministic"):
        _fg({"guess": "local", "num_guesses": 4})
    with pytest.raises(ConfigError, match="fixes guess=gaussian"):
        get_rule("fg_gaussian").create({"guess": "local"}, None, (1, 28, 28), 10, epochs=1)
    with pytest.raises(ArchError, match="feature maps"):
        _fg({"guess": "local", "aux": "cnn"})
    with pytest.raises(ArchError, match="one block"):
        _fg({}, "mlp:C")


def test_presets_and_grid_cells_cover_the_grid_and_stay_out_of_all():
    from bench.grid import GridSpec, expand
    from bench.profiles import PROFILES
    from methods.forward_gradient import GRID

    cfgs = {get_rule(n).Config() for n in GRID}
    combos = {(c.guess, c.target, c.space) for c in cfgs}
    assert len(GRID) == 19 and len(combos) == 19  # 5 x 2 x 2, local x local once (local learning)
    in_all = {c.method for c in expand(GridSpec(methods=("all",)))}
    assert {"fg_gaussian", "fg_rademacher", "fg_local", "fg_ntk", "fg_fixed_ntk", "local_learning"} <= in_all
    assert "fg" not in in_all and not any(n.count("_") >= 3 and n.startswith("fg_") for n in in_all)
    assert PROFILES["fg_grid"].methods == ("bp", *GRID)  # the whole grid is one command: PROFILE=fg_grid


# --------------------------------------------------------------------------- learning on real data
@pytest.mark.parametrize(
    "name,overrides,epochs,n,bar",
    [("fg_local", {}, 3, 3000, 0.65), ("fg_gaussian", {"derivative": "jvp"}, 2, 2000, 0.55)],
)
def test_forward_gradient_learns_on_fashion_mnist(name, overrides, epochs, n, bar, fmnist_root, tmp_path):
    from bench.run import RunConfig, run

    res = run(
        RunConfig(
            method=name,
            arch="mlp:64-64-C",
            epochs=epochs,
            limit_train=n,
            limit_eval=1000,
            data_dir=str(fmnist_root),
            runs_dir=str(tmp_path),
            wandb="disabled",
            progress=False,
            rule={**overrides, "align_every": 20},
        )
    )
    assert res.status == "completed" and res.test_acc > bar, res.test_acc
    assert "align/b0" in res.record["history"][-1]
