"""`make efficiency`: the memory measurement counts what a step holds (whatever holds it), BP keeps more activation
memory than SPELA(O) on a deep MLP, FLOPs match the model where it is exact, the theory is SPELA Table 2's."""

from __future__ import annotations

import torch
from torch import nn

from bench.efficiency import measure, step_flops, step_memory, theory
from methods.registry import get_rule

DEEP = "mlp:" + "-".join(["256"] * 16) + "-C"  # 16 hidden layers: BP's stored activations grow with depth


class _Holds(nn.Module):
    """A fake rule: holds ``keep`` floats in Python through its step, frees ``temp`` floats, leaves one grad."""

    def __init__(self, keep: int, temp: int):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1000))
        self.keep, self.temp = keep, temp

    def compute_updates(self, x, y):
        held = torch.ones(self.keep)
        del_me = torch.ones(self.temp)
        del del_me
        self.w.grad = torch.ones(1000) * held.sum()  # a grad: not counted
        return {"loss": held.sum()}


def test_memory_counts_tensors_a_step_holds_and_not_the_grads_it_leaves():
    peak, grads = step_memory(_Holds(keep=250_000, temp=100_000), torch.zeros(1), torch.zeros(1))
    assert grads == 4000
    assert 1_000_000 + 400_000 <= peak < 1_000_000 + 400_000 + 4096  # both were alive at once; the grad is left out
    peak, _ = step_memory(_Holds(keep=250_000, temp=0), torch.zeros(1), torch.zeros(1))
    assert 1_000_000 <= peak < 1_000_000 + 4096


def test_bp_keeps_more_activation_memory_than_spela_o_on_a_deep_mlp():
    x, y = torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,))
    got = {}
    for name in ("bp", "spela_o"):
        torch.manual_seed(0)
        rule = get_rule(name).create({}, DEEP, (1, 28, 28), 10, epochs=100)
        rule.compute_updates(x, y)  # warm-up
        got[name] = (*step_memory(rule, x, y), step_flops(rule, x, y), theory(rule))
    (bp_peak, bp_grads, bp_flops, bp_th), (so_peak, so_grads, so_flops, so_th) = got["bp"], got["spela_o"]
    assert bp_grads == so_grads  # same network, same gradients left behind
    assert bp_peak > 1.5 * so_peak, (bp_peak, so_peak)
    # the theoretical model beside it (SPELA Table 2): BP stores every layer's input, SPELA(O) one layer's
    assert bp_th.stored == 784 + 16 * 256 and so_th.stored == 784
    assert (bp_th.forward_passes, bp_th.backward_passes, so_th.forward_passes, so_th.backward_passes) == (1, 1, 1, 0)
    assert sum(bp_th.matvecs) == 3 * 17 - 1 and sum(so_th.matvecs) == 2 * 17
    # matmul FLOPs: BP = forward + ΔW + δ-propagation, SPELA(O) = forward + ΔW, exactly as the model counts them
    dims = [784] + [256] * 16 + [10]
    assert bp_flops == 2 * 128 * bp_th.macs(dims) and so_flops == 2 * 128 * so_th.macs(dims)


def test_theory_by_hand_on_a_small_mlp():
    """784-10-6-3: matrix-vector products per layer by hand, and what each rule must keep."""

    def make(name, arch="mlp:10-6-C"):
        return get_rule(name).create({}, arch, (1, 28, 28), 3, epochs=4)

    dims = [784, 10, 6, 3]
    w = [784 * 10, 10 * 6, 6 * 3]
    bp = theory(make("bp"))
    assert bp.matvecs == [2, 3, 3] and bp.macs(dims) == 2 * w[0] + 3 * w[1] + 3 * w[2] and bp.stored == 784 + 10 + 6
    dfa = theory(make("dfa"))
    assert dfa.macs(dims) == 2 * sum(w) + 3 * (10 + 6) and dfa.stored == 800  # e (3) through B_k to each hidden layer
    assert theory(make("drtp")).stored == 784
    pep = theory(make("pepita"))
    assert pep.forward_passes == 2 and pep.macs(dims) == 3 * sum(w) + 3 * 784 and pep.stored == 10 + 6 + 3
    ff = theory(make("ff", "mlp:10-6-3"))
    assert ff.forward_passes == 2 and ff.matvecs == [4, 4, 4]
    exact = get_rule("fg_gaussian").create({"guess_sampler": "exact"}, "mlp:10-6-C", (1, 28, 28), 3, epochs=4)
    fg = theory(exact)  # a dense guess per sample
    assert fg.matvecs == [3, 4, 4]  # forward + tangents of the JVPs from blocks <= l + the estimate (or ΔW on top)
    assert fg.forward_passes == 1 + (3 + 2) / 3  # the JVPs from blocks 1 and 2 cover 3 and 2 of the 3 layers
    assert fg.stored == 784 * 10 + 2 * 784  # block 1's per-sample weight guess, primal and tangent
    fast = theory(make("fg_gaussian"))  # factored (guess_sampler=fast): the same products, another own tangent and ĝ
    assert fast.matvecs[2] == 4 and fast.forward_passes == fg.forward_passes and fast.draws < fg.draws
    # local guess, global target: BP's products (the end-to-end δ down to block 1's output, ΔW on top, the estimate
    # ĝ one product per hidden layer) plus the trained heads; block k's mlp head (width n_k, depth 3) costs m_k
    m = [10 * 10 + 2 * 10 * 10 + 10 * 3, 6 * 6 + 2 * 6 * 6 + 6 * 3]
    fl = theory(make("fg_local"))
    assert fl.matvecs == [2, 3, 3] and fl.macs(dims) == 2 * w[0] + 3 * w[1] + 3 * w[2] + 3 * sum(m)
    assert theory(make("fg_ntk")).macs(dims) == 2 * w[0] + 3 * w[1] + 3 * w[2] + 2 * sum(m)  # untrained heads: no ΔW
    assert theory(make("fg_gaussian_local_weight")) is None  # random guesses outside the JVP model: not guessed
    assert theory(get_rule("bp").create({}, "cnn:4", (1, 8, 8), 3, epochs=1)) is None


def test_the_efficiency_bar_rules_all_measure(tmp_path, batch=4):
    from bench.efficiency import DEFAULT_METHODS, load_all, save

    for method in DEFAULT_METHODS:
        m = measure(method, "mlp:32-32-32-C", batch, "mnist", min_time=0.0)
        assert m.peak_bytes > 0 and m.flops and m.flops > 0 and m.theory is not None, method
        save(m, str(tmp_path))
    assert {r["method"] for r in load_all(tmp_path)} == set(DEFAULT_METHODS)


def _fg(name, overrides=None, arch="mlp:3-C"):
    """A forward-gradient rule on the 4-3-2 MLP (2x2 inputs, 2 classes)."""
    return theory(get_rule(name).create(overrides or {}, arch, (1, 2, 2), 2, epochs=1))


def test_head_guess_and_local_learning_models_by_hand_on_a_4_3_2_mlp():
    """dims 4-3-2, weights W_1 (4x3 = 12 multiply-adds), W_2 (3x2 = 6); block 1's head: mlp of width 5 and depth 3,
    m = 3*5 + 2*5*5 + 5*2 = 75 per forward pass (linear head: 3*2 = 6)."""
    dims, w1, w2, m = [4, 3, 2], 12, 6, 75
    aux = {"aux_width": 5}
    # local guess, global target, weight space: forward (W_1, W_2), δ back through W_2, ΔW_2, ĝ_1; head 3m
    fl = _fg("fg_local", aux)
    assert fl.matvecs == [2, 3] and (fl.forward_passes, fl.backward_passes) == (1, 1)
    assert fl.macs(dims) == 2 * w1 + 3 * w2 + 3 * m
    assert fl.stored == (4 + 3) + 3 + (3 + 3 * 5) + 3  # layer inputs, end-to-end δ_1, head inputs, guess
    assert _fg("fg_local", {"aux": "linear"}).macs(dims) == 2 * w1 + 3 * w2 + 3 * (3 * 2)
    assert _fg("fg_local").extra_macs == 3 * (3 * 3 + 2 * 3 * 3 + 3 * 2)  # aux_width 0: the block's own width
    assert _fg("fg_local_global_activity", aux).macs(dims) == 2 * w1 + 3 * w2 + 3 * m  # ĝ_h h^T: one product too
    # NTK / fixed NTK, global target: no trained head; the guess head's forward and δ back (no ΔW): 2m per guess
    for name in ("fg_ntk", "fg_fixed_ntk"):
        assert _fg(name, aux).macs(dims) == 2 * w1 + 3 * w2 + 2 * m
    ntk2 = _fg("fg_ntk", {**aux, "num_guesses": 2})
    assert ntk2.matvecs == [1 + 2, 3] and ntk2.macs(dims) == 3 * w1 + 3 * w2 + 2 * 2 * m  # one ĝ per guess
    ntk2a = _fg("fg_ntk_global_activity", {**aux, "num_guesses": 2})
    assert ntk2a.macs(dims) == 2 * w1 + 3 * w2 + 2 * 2 * m  # activity: the guesses average before one ĝ_h h^T
    # local target: no end-to-end δ; the trained head gives the target (3m), the NTK head the guess (2m)
    nl = _fg("fg_ntk_local_activity", aux)
    assert nl.matvecs == [2, 2] and nl.backward_passes == 0 and nl.macs(dims) == 2 * w1 + 2 * w2 + 3 * m + 2 * m
    assert nl.stored == (4 + 3) + 2 * (3 + 3 * 5) + 3 + 3  # layer inputs, both heads' inputs, guess, target
    assert _fg("fg_fixed_ntk_local_weight", aux).macs(dims) == 2 * w1 + 2 * w2 + 5 * m
    # local learning: forward and ΔW of each block, its head 3m; one block's input and its head's kept
    ll = _fg("local_learning", aux)
    assert ll.matvecs == [2, 2] and ll.macs(dims) == 2 * w1 + 2 * w2 + 3 * m and ll.stored == 4 + (3 + 3 * 5)
    # not modelled, said so: forward mode with a head guess, cnn heads (no MLP has feature maps)
    assert _fg("fg_local", {"derivative": "jvp"}) is None


def test_head_guess_models_match_the_counted_flops_up_to_the_per_sample_projections():
    """FlopCounterMode over one step: the model's products exactly, plus the O(n_l) dot products of the projection
    (⟨t_n, v_n⟩, ‖v_n‖², the bias's) that the model leaves out; local learning has none."""
    x, y = torch.randn(2, 1, 4, 4), torch.tensor([0, 2])
    for name, over in [("fg_local", {}), ("fg_ntk", {"num_guesses": 2}), ("fg_ntk_local_activity", {"aux_width": 5})]:
        rule = get_rule(name).create(over, "mlp:7-9-5-C", (1, 4, 4), 3, epochs=1)
        model = 2 * 2 * theory(rule).macs([16, 7, 9, 5, 3])
        flops = step_flops(rule, x, y)
        assert model <= flops <= model + 2 * 2 * 2 * rule.config.num_guesses * (7 + 9 + 5), (name, flops, model)
    rule = get_rule("local_learning").create({}, "mlp:7-9-5-C", (1, 4, 4), 3, epochs=1)
    assert step_flops(rule, x, y) == 2 * 2 * theory(rule).macs([16, 7, 9, 5, 3])
