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
    fg = theory(make("fg_gaussian"))
    assert fg.matvecs == [3, 4, 4]  # forward + tangents of the JVPs from blocks <= l + the estimate (or ΔW on top)
    assert fg.forward_passes == 1 + (3 + 2) / 3  # the JVPs from blocks 1 and 2 cover 3 and 2 of the 3 layers
    assert fg.stored == 784 * 10 + 2 * 784  # block 1's per-sample weight guess, primal and tangent
    assert theory(make("fg_local")) is None  # not modelled: said so, not guessed
    assert theory(get_rule("bp").create({}, "cnn:4", (1, 8, 8), 3, epochs=1)) is None


def test_the_efficiency_bar_rules_all_measure(tmp_path, batch=4):
    from bench.efficiency import DEFAULT_METHODS, load_all, save

    for method in DEFAULT_METHODS:
        m = measure(method, "mlp:32-32-32-C", batch, "mnist", min_time=0.0)
        assert m.peak_bytes > 0 and m.flops and m.flops > 0 and m.theory is not None, method
        save(m, str(tmp_path))
    assert {r["method"] for r in load_all(tmp_path)} == set(DEFAULT_METHODS)
