"""Forward gradient's variable parts as small strategy objects: the *guess* kinds (how block k's guess v_n is drawn)
and the two *spaces* (where target and guess live, and how the projected estimate becomes block k's update).

``ForwardGradient`` (methods/forward_gradient.py) picks one of each from its config; its two step functions
(``_backward_step``, ``_jvp_step``) run the same sequence for every combination and ask the strategies for the parts
that differ. The strategies hold no state of their own: the rule's blocks, taps and heads are passed in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import torch

from methods.shared import projection as pj
from methods.shared.aux_heads import reinit_

if TYPE_CHECKING:
    from methods.forward_gradient import ForwardGradient, _Taps


def grad(out: torch.Tensor, inputs: list[torch.Tensor], grad_outputs: torch.Tensor | None = None) -> tuple:
    """Gradients of ``out`` at ``inputs`` (None where unused), keeping the graph for the next pass."""
    if not inputs:
        return ()
    return torch.autograd.grad(out, inputs, grad_outputs=grad_outputs, retain_graph=True, allow_unused=True)


def set_grads(params: list[torch.nn.Parameter], grads) -> None:
    """Add ``grads`` (None: zeros) to ``p.grad`` of each parameter."""
    for p, g in zip(params, grads):
        g = torch.zeros_like(p) if g is None else g.detach()
        p.grad = g if p.grad is None else p.grad + g


# --------------------------------------------------------------------------- guess kinds
class Guess:
    """How block k's guess is drawn, per sample: in weight space one ``PerSample`` per trainable tensor of the block,
    in activity space one tensor shaped like the block output h_k. ``local`` is the trained head's gradient at the
    block's points (None or empty where the step did not compute it)."""

    random: ClassVar[bool] = False
    """Isotropic noise (no head): derivative=auto takes forward mode, projection=auto does not normalise in activity
    space, and forward mode needs no graph of the block in weight space."""
    varies: ClassVar[bool] = False
    """Two draws differ, so ``num_guesses`` > 1 averages something."""
    uses_local_gradient: ClassVar[bool] = False
    """The guess is the trained head's gradient at the block's points (forward mode then computes it)."""
    guess_heads: ClassVar[bool] = False
    """The rule keeps untrained auxiliary heads for it."""

    def weight(
        self, fg: ForwardGradient, k: int, taps: _Taps, hk: torch.Tensor, y: torch.Tensor, local: Any
    ) -> list[pj.PerSample]:
        raise NotImplementedError

    def activity(self, fg: ForwardGradient, k: int, hk: torch.Tensor, y: torch.Tensor, local: Any) -> torch.Tensor:
        raise NotImplementedError


class RandomGuess(Guess):
    """Gaussian or Rademacher noise drawn per sample, shaped like the per-sample target."""

    random = True
    varies = True

    def __init__(self, kind: str):
        self.kind = kind

    def weight(self, fg, k, taps, hk, y, local):
        n, fast, out = hk.shape[0], fg.config.fast_guesses, []
        for m, pname, p in fg._units[k]:
            x = taps.inp.get(m)
            if fast and isinstance(m, torch.nn.Linear) and pname == "weight" and x is not None and x.dim() == 2:
                # factored per-sample Gaussian (exact in law); rademacher: its constant norm out·in (approximate)
                norm = None if self.kind == "gaussian" else float(p.numel())
                out.append(pj.FactoredGaussian(x.detach(), p.shape[0], fixed_sqnorm=norm))
            else:
                out.append(pj.PerSample(pj.random_directions(self.kind, (n, *p.shape), p.device)))
        return out

    def activity(self, fg, k, hk, y, local):
        return pj.random_directions(self.kind, tuple(hk.shape), hk.device)


class LocalGuess(Guess):
    """The gradient of the trained auxiliary head's loss ℓ_k (Fournier et al.'s local guess)."""

    uses_local_gradient = True

    def weight(self, fg, k, taps, hk, y, local):
        return fg._contributions(taps, k, list(local))

    def activity(self, fg, k, hk, y, local):
        return local[0]


class HeadGuess(Guess):
    """The gradient of an untrained head's loss: re-drawn before every guess (``ntk``) or frozen at its
    initialisation (``fixed_ntk``)."""

    guess_heads = True

    def __init__(self, redraw: bool):
        self.redraw = redraw
        self.varies = redraw

    def _deltas(
        self, fg: ForwardGradient, k: int, hk: torch.Tensor, y: torch.Tensor, points: list[torch.Tensor]
    ) -> tuple:
        if self.redraw:
            reinit_(fg.guess_heads[k])
        with torch.enable_grad():
            return grad(fg._head_loss(fg.guess_heads[k], hk, y), points)

    def weight(self, fg, k, taps, hk, y, local):
        points = [taps.out[m] for m in fg._block_mods[k]]
        return fg._contributions(taps, k, list(self._deltas(fg, k, hk, y, points)))

    def activity(self, fg, k, hk, y, local):
        return self._deltas(fg, k, hk, y, [hk])[0]


GUESSES: dict[str, Guess] = {
    "gaussian": RandomGuess("gaussian"),
    "rademacher": RandomGuess("rademacher"),
    "local": LocalGuess(),
    "ntk": HeadGuess(redraw=True),
    "fixed_ntk": HeadGuess(redraw=False),
}
"""Every guess kind of the ``guess`` option."""


# --------------------------------------------------------------------------- spaces
class Space:
    """Where target and guess live for block k (``points``) and how the estimate becomes the block's update, from
    target gradients (two reverse passes) or from forward-mode dot products."""

    weight: ClassVar[bool]

    def points(self, fg: ForwardGradient, k: int, taps: _Taps, hk: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError

    def update_from_target(
        self, fg: ForwardGradient, k: int, taps: _Taps, hk: torch.Tensor, y: torch.Tensor, target: Any, local: Any
    ) -> None:
        """Set block k's grads: ``num_guesses`` guesses, each projected on the target gradient at the points."""
        raise NotImplementedError

    def update_from_jvp(
        self, fg: ForwardGradient, k: int, h: torch.Tensor, taps: _Taps, hk: torch.Tensor, y: torch.Tensor, local: Any
    ) -> None:
        """Set block k's grads: ``num_guesses`` guesses, ⟨t_n, v_n⟩ of each from forward mode (``h``: block input)."""
        raise NotImplementedError


class WeightSpace(Space):
    """v_n perturbs each trainable tensor; target and guess gradients sit at the block's module outputs."""

    weight = True

    def points(self, fg, k, taps, hk):
        return [taps.out[m] for m in fg._block_mods[k]]

    def update_from_target(self, fg, k, taps, hk, y, target, local):
        cfg, units = fg.config, fg._units[k]
        t_ps = fg._contributions(taps, k, target)
        est: dict[int, torch.Tensor] = {}
        for _ in range(cfg.num_guesses):
            v_ps = fg.guess.weight(fg, k, taps, hk, y, local)
            for i in range(len(units)):
                e = pj.project(t_ps[i], v_ps[i], fg.normalize, cfg.eps)
                est[i] = est[i] + e if i in est else e
        set_grads([p for _, _, p in units], [est[i] / cfg.num_guesses for i in range(len(est))])

    def update_from_jvp(self, fg, k, h, taps, hk, y, local):
        cfg, units = fg.config, fg._units[k]
        with torch.no_grad():
            guesses = [fg.guess.weight(fg, k, taps, hk, y, local) for _ in range(cfg.num_guesses)]
            dots = fg._weight_dots(k, h, y, taps, guesses)  # (num_guesses, units, B)
            ests = []
            for i in range(len(units)):
                e = 0
                for j, g in enumerate(guesses):
                    sq = g[i].sqnorm() if fg.normalize else None
                    e = e + g[i].weighted_sum(pj.coefficients(dots[j, i], sq, fg.normalize, cfg.eps))
                ests.append(e / cfg.num_guesses)
            set_grads([p for _, _, p in units], ests)


class ActivitySpace(Space):
    """v_n perturbs the block output h_k; the estimate ĝ_h is backpropagated inside the block only."""

    weight = False

    def points(self, fg, k, taps, hk):
        return [hk]

    def update_from_target(self, fg, k, taps, hk, y, target, local):
        cfg = fg.config
        ghat = 0
        for _ in range(cfg.num_guesses):
            v = fg.guess.activity(fg, k, hk, y, local)
            ghat = ghat + pj.project_activity(target[0], v, fg.normalize, cfg.eps)
        params = fg._block_params(k)
        set_grads(params, grad(hk, params, grad_outputs=ghat / cfg.num_guesses))

    def update_from_jvp(self, fg, k, h, taps, hk, y, local):
        cfg = fg.config
        with torch.no_grad():
            vs = torch.stack([fg.guess.activity(fg, k, hk, y, local).detach() for _ in range(cfg.num_guesses)])
            dots = fg._activity_dots(k, hk.detach(), y, vs)  # (num_guesses, B)
            ghat = (
                sum(
                    pj.scale_samples(v, pj.coefficients(d, pj.batch_dot(v, v), fg.normalize, cfg.eps))
                    for v, d in zip(vs, dots)
                )
                / cfg.num_guesses
            )
        params = fg._block_params(k)
        set_grads(params, grad(hk, params, grad_outputs=ghat))


SPACES: dict[str, Space] = {"weight": WeightSpace(), "activity": ActivitySpace()}
"""Every value of the ``space`` option."""
