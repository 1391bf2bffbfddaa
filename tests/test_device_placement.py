"""Device bugs without a GPU: every rule's training step (the loop's ``training_step``: zeroing, the rule's update, the
optimiser step, the loss tally) runs with the model and the batch on PyTorch's ``meta`` device.

* A tensor made on another device and mixed with the model's raises there (meta refuses CPU operands other than
  0-dim scalars), the CUDA error "Expected all tensors to be on the same device" without a GPU.
* A host sync raises: ``.item()``, ``.tolist()``, ``bool(t)``, ``.cpu()`` values and data-dependent shapes have no
  value on meta.
* ``OffDevice`` (a TorchFunctionMode) also records every tensor of more than one element that a torch function
  returns on another device, made but never mixed (e.g. index tensors built on the CPU each step: on a GPU a copy to
  the device at every step). CPU 0-dim tensors are allowed: PyTorch's own scalars (Adam's ``step`` counter) mix with
  any device and need no sync.

Exempt by design, outside the step: ``on_train_epoch_end`` reads the epoch's loss (``.item()``) and checks the
parameters for divergence (``bool``), once per epoch; the alignment diagnostic (``align_every``, off by default)
logs its cosines every N steps.
"""

from __future__ import annotations

import pytest
import torch
from torch.overrides import TorchFunctionMode

import methods  # noqa: F401 - registers the rules
from methods.base import StepGroup
from methods.registry import get_rule, list_rules

ALL = [m for m in list_rules() if get_rule(m).in_all]
FG_VARIANTS = [
    ("fg", {"guess": "gaussian", "guess_sampler": "exact"}),
    ("fg", {"guess": "rademacher", "guess_sampler": "fast", "projection": "unnormalized", "num_guesses": 2}),
    ("fg", {"guess": "gaussian", "derivative": "backward"}),
    ("fg", {"guess": "gaussian", "space": "activity"}),
    ("fg", {"guess": "ntk", "target": "local", "space": "activity", "num_guesses": 2}),
    ("fg", {"guess": "local", "derivative": "jvp"}),
]


class OffDevice(TorchFunctionMode):
    """Records (function name, device, shape) of every tensor of more than one element returned off ``device``."""

    def __init__(self, device: str):
        super().__init__()
        self.device, self.seen = torch.device(device), []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.device != self.device and t.numel() > 1:
                self.seen.append((getattr(func, "__name__", str(func)), str(t.device), tuple(t.shape)))
        return out


def _meta_step(name: str, overrides: dict, arch: str | None = None) -> list:
    torch.manual_seed(0)
    rule = get_rule(name).create(overrides, arch, (1, 28, 28), 10, epochs=2).to("meta").standalone()
    for p in rule.parameters():
        assert p.device.type == "meta"
    x, y = torch.empty(8, 1, 28, 28, device="meta"), torch.empty(8, dtype=torch.long, device="meta")
    with OffDevice("meta") as watch:
        rule.training_step(StepGroup([(x, y), (x, y)]), 0)  # two steps: the second sees the optimiser's state
    assert rule._steps == 2 and rule._loss_sum.device.type == "meta"
    return watch.seen


@pytest.mark.parametrize("name", ALL)
def test_every_rules_step_stays_on_the_models_device_without_host_syncs(name):
    assert _meta_step(name, {}) == []


@pytest.mark.parametrize("name,overrides", FG_VARIANTS, ids=lambda v: str(v))
def test_forward_gradient_paths_stay_on_the_models_device(name, overrides):
    assert _meta_step(name, overrides, "mlp:32-16-C") == []


def test_the_check_catches_a_foreign_tensor_a_host_sync_and_an_unmixed_cpu_tensor(monkeypatch):
    from methods.bp import BP

    real = BP.compute_updates

    def foreign(self, x, y):  # a tensor made without device=, mixed with the model's
        out = real(self, x, y)
        self.net.blocks[0].op.weight.grad.add_(torch.ones(self.net.blocks[0].op.weight.shape))
        return out

    monkeypatch.setattr(BP, "compute_updates", foreign)
    w = tuple(get_rule("bp").create({}, None, (1, 28, 28), 10, epochs=2).net.blocks[0].op.weight.shape)
    try:  # out-of-place ops mixing devices raise on meta; an in-place add_ does not, and the watch records it
        seen = _meta_step("bp", {})
    except RuntimeError as e:
        assert "device" in str(e)
    else:
        assert ("ones", "cpu", w) in seen

    def mixed(self, x, y):  # the same tensor in an out-of-place op: meta raises
        out = real(self, x, y)
        g = self.net.blocks[0].op.weight.grad
        self.net.blocks[0].op.weight.grad = g + torch.ones(g.shape)
        return out

    monkeypatch.setattr(BP, "compute_updates", mixed)
    with pytest.raises(RuntimeError, match="device"):
        _meta_step("bp", {})

    def sync(self, x, y):  # a host sync inside the step
        out = real(self, x, y)
        if out["loss"] > 10:
            pass
        return out

    monkeypatch.setattr(BP, "compute_updates", sync)
    with pytest.raises((RuntimeError, NotImplementedError)):
        _meta_step("bp", {})

    def unmixed(self, x, y):  # index tensors built on the CPU every step, never mixed: recorded
        torch.arange(len(y))
        return real(self, x, y)

    monkeypatch.setattr(BP, "compute_updates", unmixed)
    assert _meta_step("bp", {}) == [("arange", "cpu", (8,))] * 2  # once per step
