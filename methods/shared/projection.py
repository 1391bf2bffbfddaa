"""Per-sample, per-tensor projection of a gradient target onto a gradient guess (Fournier et al. 2023, Eq. 1, 4, 5).

A parameter's batch gradient is a sum of per-sample contributions, t = Σ_n t_n, where t_n is what sample n's
(module input x_n, output gradient δ_n) pair gives: δ_n x_n^T for a Linear weight, Σ_p δ_{n,p} unfold(x_n)_p^T for
a conv kernel, Σ_p δ_{n,p} x̂_{n,p} for a BatchNorm scale. (Cross-sample effects, such as BatchNorm statistics, are
inside δ_n, so the contributions still sum to the exact batch gradient.) A forward-gradient estimate projects each
t_n on a guess v_n of the same shape and sums over the batch::

    normalised (Fournier et al.):   ĝ = Σ_n ⟨t_n, v_n⟩ / (‖v_n‖² + ε) · v_n
    unnormalised (Baydin; Ren et al.): ĝ = Σ_n ⟨t_n, v_n⟩ · v_n

A guess equal to the target gives the target back (normalised form). For v_n ~ N(0, I) or Rademacher in d
dimensions, E[v v^T] = I and E[v v^T / ‖v‖²] = I/d, so the unnormalised estimate is unbiased and the normalised one
is t/d in expectation (per tensor).

This module holds the per-sample algebra (``PerSample``), the per-sample contributions of Linear, Conv2d and
BatchNorm parameters (``contributions``), the tangent of a module's output along a per-sample parameter direction
(``param_tangent``, the first step of a forward-mode directional derivative), and random guess directions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SUPPORTED = (nn.Linear, nn.Conv2d, nn.modules.batchnorm._BatchNorm)
"""Modules whose parameters get per-sample contributions (the ones Fournier et al.'s hooks handle)."""


class PerSample:
    """Per-sample tensors of one parameter: dense ``(B, *shape)`` or rank one (Linear weight, t_n = d_n x_n^T).

    The rank-one form keeps a Linear layer's per-sample gradients as their two factors, so dot products, norms
    and weighted sums cost O(B·(out+in)) instead of O(B·out·in).
    """

    __slots__ = ("dense", "d", "x")

    def __init__(self, dense: torch.Tensor | None = None, d: torch.Tensor | None = None, x: torch.Tensor | None = None):
        if (dense is None) == (d is None or x is None):
            raise ValueError("PerSample takes either a dense tensor or both factors d and x")
        self.dense, self.d, self.x = dense, d, x

    @classmethod
    def outer(cls, d: torch.Tensor, x: torch.Tensor) -> PerSample:
        """t_n = d_n x_n^T with d of shape (B, out) and x of shape (B, in)."""
        return cls(d=d, x=x)

    @property
    def batch(self) -> int:
        return (self.dense if self.dense is not None else self.d).shape[0]

    def to_dense(self) -> torch.Tensor:
        if self.dense is not None:
            return self.dense
        return self.d.unsqueeze(2) * self.x.unsqueeze(1)

    def sqnorm(self) -> torch.Tensor:
        """‖t_n‖² for every sample, shape (B,)."""
        if self.dense is None:
            return self.d.pow(2).sum(1) * self.x.pow(2).sum(1)
        return torch.linalg.vector_norm(self.dense.reshape(self.batch, -1), dim=1).pow(2)

    def dot(self, other: PerSample) -> torch.Tensor:
        """⟨self_n, other_n⟩ for every sample, shape (B,)."""
        if self.dense is None and other.dense is None:
            return (self.d * other.d).sum(1) * (self.x * other.x).sum(1)
        if self.dense is None or other.dense is None:  # d_n^T V_n x_n without forming d_n x_n^T
            fac, den = (self, other) if self.dense is None else (other, self)
            vx = torch.bmm(den.dense, fac.x.unsqueeze(2)).squeeze(2)
            return (vx * fac.d).sum(1)
        a, b = self.dense.reshape(self.batch, -1), other.dense.reshape(self.batch, -1)
        return torch.bmm(a.unsqueeze(1), b.unsqueeze(2)).view(-1)

    def weighted_sum(self, c: torch.Tensor) -> torch.Tensor:
        """Σ_n c_n t_n (the parameter's shape)."""
        if self.dense is None:
            return (c.unsqueeze(1) * self.d).t() @ self.x
        flat = self.dense.reshape(self.batch, -1)
        return torch.mv(flat.t(), c).view(self.dense.shape[1:])


def coefficients(dots: torch.Tensor, guess_sqnorms: torch.Tensor | None, normalize: bool, eps: float) -> torch.Tensor:
    """c_n = ⟨t_n, v_n⟩ / (‖v_n‖² + ε) (normalised) or ⟨t_n, v_n⟩ (unnormalised)."""
    return dots / (guess_sqnorms + eps) if normalize else dots


def project(
    target: PerSample, guess: PerSample | FactoredGaussian, normalize: bool = True, eps: float = 1e-16
) -> torch.Tensor:
    """ĝ = Σ_n c_n v_n for one parameter tensor, with both t_n and v_n known (the two-backward simulation)."""
    sq = guess.sqnorm() if normalize else None
    dots = guess.dot(target) if isinstance(guess, FactoredGaussian) else target.dot(guess)
    return guess.weighted_sum(coefficients(dots, sq, normalize, eps))


def project_activity(
    target: torch.Tensor, guess: torch.Tensor, normalize: bool = True, eps: float = 1e-16
) -> torch.Tensor:
    """Per-sample projection of block-output gradients: ĝ_n = c_n v_n, shape (B, ...) like the guess."""
    return scale_samples(guess, coefficients(batch_dot(target, guess), batch_dot(guess, guess), normalize, eps))


def batch_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """⟨a_n, b_n⟩ for every sample, shape (B,)."""
    n = a.shape[0]
    return torch.bmm(a.reshape(n, 1, -1), b.reshape(n, -1, 1)).view(-1)


def scale_samples(t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """c_n t_n for every sample."""
    return t * c.view(-1, *([1] * (t.dim() - 1)))


# --------------------------------------------------------------------------- per-sample contributions
def check_module(module: nn.Module) -> None:
    """Raise ValueError for a module whose per-sample contributions this file cannot form."""
    if isinstance(module, nn.Conv2d):
        if module.groups != 1 or isinstance(module.padding, str) or module.padding_mode != "zeros":
            raise ValueError(
                f"per-sample projection supports ungrouped, zero-padded Conv2d with numeric padding; got {module}"
            )


def contributions(module: nn.Module, inp: torch.Tensor, grad_out: torch.Tensor) -> dict[str, PerSample]:
    """Per-sample contributions t_n of every trainable parameter of ``module`` to the batch gradient.

    ``inp`` is the module's input and ``grad_out`` the gradient of the loss with respect to its output.
    """
    out: dict[str, PerSample] = {}
    w, b = getattr(module, "weight", None), getattr(module, "bias", None)
    n = inp.shape[0]
    if isinstance(module, nn.Linear):
        if w is not None and w.requires_grad:
            if inp.dim() == 2:
                out["weight"] = PerSample.outer(grad_out, inp)
            else:
                out["weight"] = PerSample(
                    torch.einsum(
                        "nko,nki->noi", grad_out.reshape(n, -1, grad_out.shape[-1]), inp.reshape(n, -1, inp.shape[-1])
                    )
                )
        if b is not None and b.requires_grad:
            out["bias"] = PerSample(grad_out.reshape(n, -1, grad_out.shape[-1]).sum(1))
    elif isinstance(module, nn.Conv2d):
        if w is not None and w.requires_grad:
            cols = F.unfold(
                inp, module.kernel_size, dilation=module.dilation, padding=module.padding, stride=module.stride
            )  # (B, Cin·k·k, P)
            d = grad_out.reshape(n, grad_out.shape[1], -1)  # (B, Cout, P)
            out["weight"] = PerSample(torch.bmm(d, cols.transpose(1, 2)).view(n, *w.shape))
        if b is not None and b.requires_grad:
            out["bias"] = PerSample(grad_out.sum((2, 3)))
    elif isinstance(module, nn.modules.batchnorm._BatchNorm):
        dims = [0] + list(range(2, inp.dim()))
        if module.training or module.running_mean is None:  # batch statistics (biased variance), as in the forward
            mean, var = inp.mean(dims), inp.var(dims, unbiased=False)
        else:
            mean, var = module.running_mean, module.running_var
        shape = [1, -1] + [1] * (inp.dim() - 2)
        xhat = (inp - mean.view(shape)) / torch.sqrt(var.view(shape) + module.eps)
        spatial = tuple(range(2, inp.dim()))
        if w is not None and w.requires_grad:
            g = grad_out * xhat
            out["weight"] = PerSample(g.sum(spatial) if spatial else g)
        if b is not None and b.requires_grad:
            out["bias"] = PerSample(grad_out.sum(spatial) if spatial else grad_out)
    else:
        raise TypeError(f"no per-sample contributions for {type(module).__name__}")
    return out


def param_tangent(module: nn.Module, name: str, inp: torch.Tensor, v: PerSample | FactoredGaussian) -> torch.Tensor:
    """d(module output)/dε for sample n's copy of parameter ``name`` moved to p + ε v_n (shape of the output).

    Every output is linear in each of these parameters, so this JVP is written in closed form; the rest of the
    network carries it forward with ``torch.func.jvp``.
    """
    n = inp.shape[0]
    if isinstance(v, FactoredGaussian):  # a Linear weight on the (B, in) inputs it was drawn for
        return v.tangent(inp)
    if isinstance(module, nn.Linear):
        if name == "bias":
            d = v.to_dense()
            return d if inp.dim() == 2 else d.view(n, *([1] * (inp.dim() - 2)), -1).expand(*inp.shape[:-1], -1)
        if v.dense is None and inp.dim() == 2:  # (d_n x'_n^T) x_n = d_n (x'_n · x_n)
            return v.d * (v.x * inp).sum(1, keepdim=True)
        vd = v.to_dense()
        return torch.einsum("noi,n...i->n...o", vd, inp)
    if isinstance(module, nn.Conv2d):
        vd = v.to_dense()
        if name == "bias":
            return vd[:, :, None, None].expand(n, vd.shape[1], *_conv_out_hw(module, inp))
        cout = module.out_channels
        y = F.conv2d(
            inp.reshape(1, n * inp.shape[1], *inp.shape[2:]),
            vd.reshape(n * cout, *vd.shape[2:]),
            None,
            module.stride,
            module.padding,
            module.dilation,
            groups=n,
        )  # one kernel per sample
        return y.view(n, cout, *y.shape[2:])
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        vd = v.to_dense()
        shape = [n, -1] + [1] * (inp.dim() - 2)
        if name == "bias":
            return vd.view(shape).expand_as(inp)
        dims = [0] + list(range(2, inp.dim()))
        if module.training or module.running_mean is None:
            mean, var = inp.mean(dims), inp.var(dims, unbiased=False)
        else:
            mean, var = module.running_mean, module.running_var
        bshape = [1, -1] + [1] * (inp.dim() - 2)
        xhat = (inp - mean.view(bshape)) / torch.sqrt(var.view(bshape) + module.eps)
        return xhat * vd.view(shape)
    raise TypeError(f"no parameter tangent for {type(module).__name__}")


def _conv_out_hw(module: nn.Conv2d, inp: torch.Tensor) -> tuple[int, int]:
    hw = []
    for i in range(2):
        size = inp.shape[2 + i] + 2 * module.padding[i] - module.dilation[i] * (module.kernel_size[i] - 1) - 1
        hw.append(size // module.stride[i] + 1)
    return hw[0], hw[1]


# --------------------------------------------------------------------------- random guesses
def random_directions(
    kind: str, shape: tuple[int, ...], device: torch.device | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Isotropic guesses: ``gaussian`` N(0, I) or ``rademacher`` (±1 with probability 1/2), from torch's RNG."""
    if kind == "gaussian":
        return torch.randn(shape, device=device, dtype=dtype)
    if kind == "rademacher":
        return torch.randint(0, 2, shape, device=device, dtype=torch.int8).to(dtype).mul_(2).sub_(1)
    raise ValueError(f"unknown random guess {kind!r}")


# ------------------------------------------------------------------- factored Gaussian guesses of a Linear weight
class FactoredGaussian:
    """Per-sample Gaussian guesses V_1 .. V_B of one Linear weight (out x in, i.i.d. N(0, 1) entries), held in a form
    that draws about out·B²/2 + out·in random numbers instead of B·out·in (``guess_sampler=fast``).

    Exact in distribution: everything the projection reads (⟨t_n, V_n⟩ through the tangent V_n x_n, ‖V_n‖² and
    Σ_n c_n V_n for coefficients c_n that may depend on the first two) has the joint law it has under dense
    per-sample draws. With Xᵀ = E R (QR of the batch's inputs: E in x r orthonormal, R r x B upper triangular,
    r = min(B, in)), split V_n = A_n Eᵀ + Z_n, A_n = V_n E (out x r), Z_n = V_n (I - E Eᵀ):

    * the Z_n are i.i.d. standard Gaussians in one subspace, R^out ⊗ E^⊥ (dimension D = out·(in - r)), independent of
      the A_n, and no tangent sees them (x_n = E R_n). Their Gram matrix Γ (Γ_nn = ‖Z_n‖²) is Wishart(D, I_B), drawn
      by Bartlett's decomposition Γ = L Lᵀ; given Γ the configuration is a uniformly random rotation of any one with
      that Gram matrix, so Σ_n c_n Z_n = ‖Lᵀ c‖ Ω with Ω a uniform unit vector of the subspace, drawn as P G / ‖P G‖
      from one out x in Gaussian G (P: the projection on the subspace);
    * column j of A_n, a_nj ~ N(0, I_out), enters the tangent A_n R_n only for n >= j (R is triangular). Those are
      drawn (B(B+1)/2 columns of out numbers); for n < j it is only summed and counted in ‖V_n‖², and the same
      rotation argument in R^out holds for the j vectors a_0j .. a_(j-1)j: a Bartlett factor of size j per column
      and one uniform unit vector ω_j, Σ_{n<j} c_n a_nj = ‖L_jᵀ c‖ ω_j.
    So ‖V_n‖² = Σ_{j<=n} ‖a_nj‖² + Σ_{j>n} (L_j L_jᵀ)_nn + (L Lᵀ)_nn and
    Σ_n c_n V_n = α G + (M - α G E) Eᵀ, M_j = Σ_{n>=j} c_n a_nj + ‖L_jᵀ c‖ ω_j, α = ‖Lᵀ c‖ / ‖P G‖.
    Where out < B all of A is drawn; where D < B, L is a drawn B x D Gaussian (Γ = L Lᵀ still).

    ``fixed_sqnorm`` replaces ‖V_n‖² by a constant: the Rademacher approximation of ``guess_sampler=fast`` (a
    Gaussian guess with a Rademacher guess's norm out·in: the same mean, not the same covariance).
    """

    dense = None

    def __init__(self, x: torch.Tensor, out: int, fixed_sqnorm: float | None = None):
        batch, n_in = x.shape
        dev, dt = x.device, x.dtype
        self.E, self.R = torch.linalg.qr(x.t())  # (in, r), (r, B)
        r = self.E.shape[1]
        self.out, self.fixed_sqnorm = out, fixed_sqnorm
        nested = out >= batch
        self.n_idx, self.j_idx, lf_idx, diag_idx = _factored_indices(batch, r, nested, dev)
        self.P = torch.randn(len(self.n_idx), out, device=dev, dtype=dt)  # the drawn a_nj, one row per (n, j)
        self.Lf = self.omega = None
        if lf_idx is not None:  # column j: Bartlett factor of the j unseen vectors a_0j .. a_(j-1)j
            self.Lf = torch.zeros(r, batch, batch, device=dev, dtype=dt)
            self.Lf[lf_idx] = torch.randn(len(lf_idx[0]), device=dev, dtype=dt)
            dof = (out - diag_idx[1]).to(torch.float64)
            self.Lf[diag_idx[0], diag_idx[1], diag_idx[1]] = (torch._standard_gamma(dof / 2) * 2).sqrt().to(dt)
            w = torch.randn(r, out, device=dev, dtype=dt)
            self.omega = w / torch.linalg.vector_norm(w, dim=1, keepdim=True)  # ω_j, one per row
        self.d_perp = d_perp = out * (n_in - r)
        self.L = self.G = None
        if d_perp:
            if d_perp >= batch:
                self.L = bartlett(batch, d_perp, dev, dt)
            else:
                self.L = torch.randn(batch, d_perp, device=dev, dtype=dt)
            self.G = torch.randn(out, n_in, device=dev, dtype=dt)

    @property
    def batch(self) -> int:
        return self.R.shape[1]

    def tangent(self, x: torch.Tensor | None = None) -> torch.Tensor:
        """V_n x_n = Σ_j R_jn a_nj for every sample (the inputs the guess was drawn for), shape (B, out)."""
        w = self.R[self.j_idx, self.n_idx]
        out = torch.zeros(self.batch, self.out, device=self.P.device, dtype=self.P.dtype)
        return out.index_add_(0, self.n_idx, self.P * w[:, None])

    def dot(self, target: PerSample) -> torch.Tensor:
        """⟨t_n, V_n⟩ = d_nᵀ V_n x_n for a rank-one target t_n = d_n x_nᵀ on the guess's inputs."""
        if target.dense is not None:
            raise ValueError("a factored guess projects rank-one (Linear weight) targets only")
        return (self.tangent() * target.d).sum(1)

    def sqnorm(self) -> torch.Tensor:
        """‖V_n‖² for every sample, shape (B,) (``fixed_sqnorm`` when set)."""
        if self.fixed_sqnorm is not None:
            return torch.full((self.batch,), self.fixed_sqnorm, device=self.P.device, dtype=self.P.dtype)
        rows = torch.linalg.vector_norm(self.P, dim=1).square()
        sq = torch.zeros(self.batch, device=self.P.device, dtype=self.P.dtype).index_add_(0, self.n_idx, rows)
        if self.Lf is not None:
            sq = sq + self.Lf.square().sum((0, 2))
        return sq if self.L is None else sq + self.L.square().sum(1)

    def weighted_sum(self, c: torch.Tensor) -> torch.Tensor:
        """Σ_n c_n V_n (out x in)."""
        r = self.E.shape[1]
        mt = torch.zeros(r, self.out, device=self.P.device, dtype=self.P.dtype)  # Mᵀ: row j = Σ_n c_n a_nj
        mt.index_add_(0, self.j_idx, self.P * c[self.n_idx, None])
        if self.Lf is not None:
            kappa = torch.linalg.vector_norm(torch.einsum("jnm,n->jm", self.Lf, c), dim=1)
            mt = mt + self.omega * kappa[:, None]
        if self.G is None:
            return mt.t() @ self.E.t()
        ge = self.G @ self.E
        kappa = torch.linalg.vector_norm(self.L.t() @ c)
        if 2 * self.d_perp < self.G.numel():  # a small complement: ‖P G‖ by subtraction would lose precision
            pg = self.G - ge @ self.E.t()
            return torch.addmm(pg * (kappa / torch.linalg.vector_norm(pg)), mt.t(), self.E.t())
        # ‖P G‖² = ‖G‖² - ‖G E‖² (most of G lies in the complement); α P G + M Eᵀ = α G + (M - α G E) Eᵀ
        alpha = kappa / (torch.linalg.vector_norm(self.G).square() - torch.linalg.vector_norm(ge).square()).sqrt()
        return torch.addmm(self.G * alpha, mt.t() - alpha * ge, self.E.t())


_INDICES: dict = {}


def _factored_indices(batch: int, r: int, nested: bool, device) -> tuple:
    """Index tensors of ``FactoredGaussian`` (cached): the drawn (n, j) pairs (j <= n, or all pairs when not
    ``nested``), and for the per-column Bartlett factors the strictly lower (j, n, m), m < n < j, and diagonal
    (j, n), n < j, entries (None when not nested)."""
    key = (batch, r, nested, str(device))
    if key not in _INDICES:  # built on the device from sizes alone: no mask indexing (a host sync on a GPU)
        if nested:
            n, j = torch.tril_indices(batch, r, device=device)  # j <= n
        else:
            n = torch.arange(batch, device=device).repeat_interleave(r)
            j = torch.arange(r, device=device).repeat(batch)
        lf = diag = None
        if nested and r > 1:
            jd, nd = torch.tril_indices(r, r, -1, device=device)  # n < j
            diag = (jd, nd)
            # the pairs m < n < j of column j are the first j(j-1)/2 of tril_indices(r, r, -1) (rows in order)
            pn, pm = torch.tril_indices(r, r, -1, device=device)
            counts = [c * (c - 1) // 2 for c in range(r)]
            lf = (
                torch.cat([torch.full((c,), col, device=device, dtype=torch.long) for col, c in enumerate(counts)]),
                torch.cat([pn[:c] for c in counts]),
                torch.cat([pm[:c] for c in counts]),
            )
        _INDICES[key] = (n, j, lf, diag)
    return _INDICES[key]


def bartlett(p: int, dof: int, device, dtype) -> torch.Tensor:
    """L with L Lᵀ ~ Wishart(dof, I_p) (Bartlett's decomposition; dof >= p): L_ii = √χ²_{dof-i} (i from 0),
    L_ij ~ N(0, 1) for i > j, 0 above the diagonal."""
    low = torch.randn(p, p, device=device, dtype=dtype).tril(-1)
    df = torch.arange(dof, dof - p, -1, device=device, dtype=torch.float64)
    chi2 = torch._standard_gamma(df / 2) * 2  # χ²_k = 2 Gamma(k/2, 1)
    return low + torch.diag(chi2.sqrt().to(dtype))
