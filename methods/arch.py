"""The one architecture builder shared by every rule.

An arch string lists every layer after the input, ``C`` standing for the class count, then
comma-separated options::

    mlp:1024-C                  784-1024-10 on MNIST
    mlp:1000-34                 SPELA's 784-1000-34 (no C-way output layer)
    mlp:1000-1000-1000          Forward-Forward
    mlp:1024-C,act=tanh,out_act=sigmoid,bias=0,init=he_uniform
    cnn:32                      conv 32 5x5 stride 1 pad 2 (+ act, 2x2 max-pool), then a Linear head to C
    cnn:32-32,fc=1024,pool=none two conv layers, a 1024-unit hidden layer, then the head
    cnn:32-32,head=0            the two conv layers only (no Linear layers after them; SPELA CNN's kernels classify)
    mlp:1024-C,binary=1         ±1 weights in the forward pass (sign of real latent weights, straight-through
                                gradient; biases stay real; see methods/shared/binary.py), e.g. BP-Bin. Rules with
                                hand-written update formulas that read ``op.weight`` see the latent weights.
    resnet18                    ResNet-18 for 32x32 inputs, grouped into 8 blocks (one per BasicBlock)
    resnet18,blocks=16,skip=0   the skip-free ResNet-18 in 16 blocks (Fournier et al. 2023, Sec. 4)

The network is a ``LayeredNet``: an ``nn.ModuleList`` of blocks applied in order. For MLPs and the
small CNN every block is a ``Layer`` (``pre`` reshaping, affine ``op``, activation ``act``, ``post``
pooling), so rules with explicit update formulas can reach each piece.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from methods.config import coerce
from methods.errors import ArchError
from methods.shared.binary import BinaryConv2d, BinaryLinear

KINDS = ("mlp", "cnn", "resnet18")
INITS = ("default", "he_uniform", "he_normal", "xavier_uniform", "lecun_normal", "zeros")
POOLS = ("max2", "avg2", "none")


# --------------------------------------------------------------------------- activations
class Activation(nn.Module):
    """Elementwise activation that also knows its derivative f'(a) (for explicit update formulas)."""

    def __init__(self, name: str):
        super().__init__()
        if name not in ACTIVATIONS:
            raise ArchError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")
        self.name = name
        self._f, self._df = ACTIVATIONS[name]

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return self._f(a)

    def derivative(self, a: torch.Tensor) -> torch.Tensor:
        """f'(a), evaluated at the pre-activation ``a``."""
        return self._df(a)

    def backward(self, g: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """g ⊙ f'(a): a signal on the output carried back to the pre-activation ``a`` (a new tensor). ReLU takes
        autograd's own ReLU backward (g where a > 0, else 0) in one pass instead of building, converting and multiplying
        by the 0/1 mask f'(a); the values are the same."""
        if self.name == "relu":
            return torch.ops.aten.threshold_backward(g, a, 0.0)
        return g * self._df(a)

    def extra_repr(self) -> str:
        return self.name


def _sigmoid_grad(a: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(a)
    return s * (1 - s)


def _leaky_grad(a: torch.Tensor, slope: float) -> torch.Tensor:
    """1 where a > 0, else ``slope``, in a's dtype (the slope is not rounded to float32 first)."""
    return torch.where(a > 0, a.new_ones(()), a.new_full((), slope))


ACTIVATIONS = {
    "relu": (torch.relu, lambda a: (a > 0).to(a.dtype)),
    "tanh": (torch.tanh, lambda a: 1 - torch.tanh(a) ** 2),
    "sigmoid": (torch.sigmoid, _sigmoid_grad),
    "leaky_relu": (nn.functional.leaky_relu, lambda a: _leaky_grad(a, 0.01)),
    # slope 0.001: the SPELA authors' MLP code
    "leaky_relu_1e-3": (lambda a: nn.functional.leaky_relu(a, 1e-3), lambda a: _leaky_grad(a, 1e-3)),
    "elu": (nn.functional.elu, lambda a: torch.where(a > 0, torch.ones_like(a), torch.exp(a))),
    "silu": (nn.functional.silu, lambda a: torch.sigmoid(a) * (1 + a * (1 - torch.sigmoid(a)))),
    "softplus": (nn.functional.softplus, torch.sigmoid),
    "none": (lambda a: a, torch.ones_like),
}


# --------------------------------------------------------------------------- spec
@dataclass(frozen=True)
class ArchSpec:
    """Parsed architecture string. Build it with ``ArchSpec.parse``."""

    kind: str
    widths: tuple = ()
    """mlp: every layer's width ('C' allowed); cnn: channels of each conv layer; resnet18: unused."""
    fc: tuple = ()
    """cnn only: hidden fully-connected widths between the convs and the C-way head."""
    act: str = "relu"
    """Hidden activation."""
    out_act: str = "none"
    """Activation of the last layer (none = logits)."""
    bias: bool = True
    init: str = "default"
    """default (PyTorch's), he_uniform, he_normal, xavier_uniform, lecun_normal (N(0, 1/fan_in)), zeros."""
    kernel: int = 5
    """cnn only: conv kernel size (stride 1, 'same' padding)."""
    pool: str = "max2"
    """cnn only: pooling after each conv: max2, avg2 or none."""
    blocks: int = 8
    """resnet18 only: 8 (one per BasicBlock, with skips) or 16 (one per conv, no skips)."""
    skip: bool = True
    """resnet18 only: keep the residual connections."""
    head: bool = True
    """cnn only: append the fc layers and the C-way Linear head (0: the network ends with the last conv block)."""
    binary: bool = False
    """mlp/cnn: ±1 weights (sign of latent real weights, straight-through gradient), real biases."""

    @classmethod
    def parse(cls, text: str, defaults: Mapping[str, Any] | None = None) -> ArchSpec:
        """Parse ``text``; ``defaults`` (a rule's preferred options) apply where the string is silent."""
        if not isinstance(text, str) or not text.strip():
            raise ArchError("empty architecture string; examples: mlp:1024-C, cnn:32-32, resnet18,blocks=16,skip=0")
        head, *opts = [p.strip() for p in text.strip().split(",")]
        kind, _, layers = head.partition(":")
        if kind not in KINDS:
            raise ArchError(f"unknown architecture kind {kind!r} in {text!r}; choose one of {', '.join(KINDS)}")
        given: dict[str, Any] = {}
        for opt in opts:
            key, eq, val = opt.partition("=")
            if not eq or key not in _OPTION_TYPES:
                raise ArchError(
                    f"bad option {opt!r} in {text!r}; options are key=value, key one of {', '.join(_OPTION_TYPES)}"
                )
            if kind not in _OPTION_KINDS.get(key, KINDS):
                raise ArchError(f"option {key!r} applies to {'/'.join(_OPTION_KINDS[key])} only, not to {text!r}")
            given[key] = val
        merged: dict[str, Any] = {}
        for key, val in dict(defaults or {}).items():
            if key not in _OPTION_TYPES:
                raise ArchError(f"unknown architecture option {key!r}")
            if kind in _OPTION_KINDS.get(key, KINDS):  # a rule's defaults may name options of other kinds
                merged[key] = val
        merged.update(given)
        values = {
            k: (_parse_widths(v, text, allow_c=False) if isinstance(v, str) else tuple(v))
            if k == "fc"
            else coerce(v, _OPTION_TYPES[k], k)
            for k, v in merged.items()
        }
        if kind == "resnet18":
            if layers:
                raise ArchError(f"resnet18 takes no layer list (got {text!r}); use options blocks=8|16, skip=0|1")
            widths: tuple = ()
        else:
            if not layers:
                raise ArchError(f"{kind} needs a layer list, e.g. {kind}:1024-C")
            widths = _parse_widths(layers, text, allow_c=(kind == "mlp"))
        spec = cls(kind=kind, widths=widths, **values)
        spec._validate(text)
        return spec

    def _validate(self, text: str) -> None:
        for name in ("act", "out_act"):
            if getattr(self, name) not in ACTIVATIONS:
                raise ArchError(f"{name}={getattr(self, name)!r} in {text!r}; choose one of {', '.join(ACTIVATIONS)}")
        if self.init not in INITS:
            raise ArchError(f"init={self.init!r} in {text!r}; choose one of {', '.join(INITS)}")
        if self.pool not in POOLS:
            raise ArchError(f"pool={self.pool!r} in {text!r}; choose one of {', '.join(POOLS)}")
        if self.kernel < 1 or self.kernel % 2 == 0:
            raise ArchError(f"kernel must be an odd size >= 1, got {self.kernel}")
        if self.kind == "resnet18":
            if self.blocks not in (8, 16):
                raise ArchError(f"resnet18 is grouped into 8 or 16 blocks, not {self.blocks}")
            if self.blocks == 16 and self.skip:
                raise ArchError(
                    "resnet18,blocks=16 splits every residual block in two, which a skip connection would span; "
                    "use resnet18,blocks=16,skip=0 (the skip-free model of Fournier et al. 2023) or blocks=8"
                )
        if self.kind == "cnn" and not self.head and self.fc:
            raise ArchError(
                f"head=0 ends the network with the last conv block, so fc={self.fc} has no place in {text!r}"
            )
        if self.kind == "mlp" and "C" in self.widths[:-1]:
            raise ArchError(f"'C' (the class count) may only be the last layer of an mlp, got {text!r}")

    @property
    def text(self) -> str:
        """Canonical string with every option spelled out (used in run names and records)."""
        base = self.kind if self.kind == "resnet18" else f"{self.kind}:{'-'.join(map(str, self.widths))}"
        opts = [f"act={self.act}", f"out_act={self.out_act}", f"bias={int(self.bias)}", f"init={self.init}"]
        if self.kind == "cnn":
            opts += [f"fc={'-'.join(map(str, self.fc)) or 'none'}", f"kernel={self.kernel}", f"pool={self.pool}"]
            if not self.head:  # spelled out only when not the default, so existing runs keep their hashes
                opts.append("head=0")
        if self.binary:
            opts.append("binary=1")
        if self.kind == "resnet18":
            opts += [f"blocks={self.blocks}", f"skip={int(self.skip)}"]
        return ",".join([base, *opts])

    @property
    def short(self) -> str:
        """Layer part only, e.g. 'mlp:1024-C' or 'resnet18-16b-noskip'."""
        if self.kind == "resnet18":
            return f"resnet18-{self.blocks}b" + ("" if self.skip else "-noskip")
        return (
            f"{self.kind}:{'-'.join(map(str, self.widths))}"
            + (f"/fc{'-'.join(map(str, self.fc))}" if self.fc else "")
            + ("/nohead" if self.kind == "cnn" and not self.head else "")
            + ("/bin" if self.binary else "")
        )

    def ends_in_classes(self) -> bool:
        """True when the network's last layer has C units (a C-way read-out)."""
        if self.kind == "cnn":
            return self.head
        return self.kind != "mlp" or self.widths[-1] == "C"


def _parse_widths(s: str, text: str, allow_c: bool) -> tuple:
    if s in ("", "none"):
        return ()
    out: list = []
    toks = s.split("-")
    for i, tok in enumerate(toks):
        if tok == "" and i + 1 < len(toks) and toks[i + 1].isdigit():  # "mlp:-5-C": a negative width
            raise ArchError(f"layer width must be >= 1, got -{toks[i + 1]} in {text!r}")
        if tok == "":
            raise ArchError(
                f"empty layer width in {text!r} (a '-' too many?); widths are positive integers"
                + (" or C" if allow_c else "")
                + " joined by '-', e.g. mlp:1024-C"
            )
        if tok == "C" and allow_c:
            out.append("C")
            continue
        try:
            w = int(tok)
        except ValueError:
            raise ArchError(
                f"bad layer width {tok!r} in {text!r}; widths are positive integers" + (" or C" if allow_c else "")
            ) from None
        if w < 1:
            raise ArchError(f"layer width must be >= 1, got {w} in {text!r}")
        out.append(w)
    return tuple(out)


_OPTION_TYPES: dict[str, Any] = {
    "fc": tuple,
    "act": str,
    "out_act": str,
    "bias": bool,
    "init": str,
    "kernel": int,
    "pool": str,
    "blocks": int,
    "skip": bool,
    "head": bool,
    "binary": bool,
}
_OPTION_KINDS = {
    "fc": ("cnn",),
    "kernel": ("cnn",),
    "pool": ("cnn",),
    "head": ("cnn",),
    "binary": ("mlp", "cnn"),
    "blocks": ("resnet18",),
    "skip": ("resnet18",),
}


# --------------------------------------------------------------------------- modules
class Layer(nn.Module):
    """One trainable layer: h_out = post(act(op(pre(h_in)))). ``op`` is a Linear or Conv2d."""

    def __init__(self, op: nn.Module, act: Activation, pre: nn.Module | None = None, post: nn.Module | None = None):
        super().__init__()
        self.pre = pre if pre is not None else nn.Identity()
        self.op = op
        self.act = act
        self.post = post if post is not None else nn.Identity()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.post(self.act(self.op(self.pre(h))))


class BasicBlock(nn.Module):
    """ResNet BasicBlock: conv3x3-BN-ReLU-conv3x3-BN (+ shortcut) -ReLU."""

    def __init__(self, cin: int, cout: int, stride: int, skip: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip = skip
        self.shortcut = nn.Identity()
        if skip and (stride != 1 or cin != cout):
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        if self.skip:
            out = out + self.shortcut(x)
        return torch.relu(out)


def _conv_bn_relu(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class LayeredNet(nn.Module):
    """Blocks applied in order; ``blocks[k]`` maps block k-1's output to block k's."""

    def __init__(
        self, blocks: list[nn.Module], spec: ArchSpec, in_shape: tuple[int, ...], num_classes: int, widths: list[int]
    ):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.spec = spec
        self.in_shape = tuple(in_shape)
        self.num_classes = num_classes
        self.widths = widths
        """Output size (units or channels) of every block."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x

    def block_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The output of every block, in order."""
        outs = []
        for block in self.blocks:
            x = block(x)
            outs.append(x)
        return outs


def _dense(dims: list[int], linear: type, act: str, spec: ArchSpec) -> list[Layer]:
    """Fully connected layers ``dims[0] -> dims[1] -> ...``: the input flattened first, ``act`` after every layer
    but the last, ``spec.out_act`` after the last."""
    return [
        Layer(
            linear(din, dout, bias=spec.bias),
            Activation(spec.out_act if i == len(dims) - 2 else act),
            pre=nn.Flatten() if i == 0 else None,
        )
        for i, (din, dout) in enumerate(zip(dims[:-1], dims[1:]))
    ]


def _pool(name: str) -> nn.Module:
    return {"max2": nn.MaxPool2d(2), "avg2": nn.AvgPool2d(2), "none": nn.Identity()}[name]


def build_network(spec: ArchSpec, in_shape: tuple[int, ...], num_classes: int) -> LayeredNet:
    """Build the network described by ``spec`` for inputs of shape ``in_shape`` (C, H, W)."""
    act = spec.act
    linear = BinaryLinear if spec.binary else nn.Linear
    conv = BinaryConv2d if spec.binary else nn.Conv2d
    if spec.kind == "mlp":
        dims = [math.prod(in_shape)] + [num_classes if w == "C" else w for w in spec.widths]
        net = LayeredNet(_dense(dims, linear, act, spec), spec, in_shape, num_classes, dims[1:])
    elif spec.kind == "cnn":
        c, h, w = in_shape
        blocks, widths = [], []
        for ch in spec.widths:
            blocks.append(
                Layer(
                    conv(c, ch, spec.kernel, 1, spec.kernel // 2, bias=spec.bias),
                    Activation(act),
                    post=_pool(spec.pool),
                )
            )
            c = ch
            if spec.pool != "none":
                if h < 2 or w < 2:
                    raise ArchError(
                        f"{spec.short}: too many pooled conv layers for a {in_shape[1]}x{in_shape[2]} input"
                    )
                h, w = h // 2, w // 2
            widths.append(ch)
        dims = [c * h * w, *spec.fc, num_classes] if spec.head else []
        blocks += _dense(dims, linear, act, spec)
        net = LayeredNet(blocks, spec, in_shape, num_classes, widths + dims[1:])
    else:
        net = _resnet18(spec, in_shape, num_classes)
    _init(net, spec)
    return net


def _resnet18(spec: ArchSpec, in_shape: tuple[int, ...], num_classes: int) -> LayeredNet:
    cin = in_shape[0]
    stem = [nn.Conv2d(cin, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU()]
    plan = [
        (64, 64, 1),
        (64, 64, 1),
        (64, 128, 2),
        (128, 128, 1),
        (128, 256, 2),
        (256, 256, 1),
        (256, 512, 2),
        (512, 512, 1),
    ]
    head = [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, num_classes)]
    if spec.blocks == 8:
        groups = [[BasicBlock(a, b, s, spec.skip)] for a, b, s in plan]
        groups[0] = stem + groups[0]
        widths = [b for _, b, _ in plan]
    else:  # 16 blocks, no skips: every conv-BN-ReLU is a block; the first also holds the stem
        convs = []
        for a, b, s in plan:
            convs += [_conv_bn_relu(a, b, s), _conv_bn_relu(b, b, 1)]
        groups = [[c] for c in convs]
        groups[0] = stem + groups[0]
        widths = [b for _, b, _ in plan for _ in range(2)]
    groups[-1] = groups[-1] + head
    widths[-1] = num_classes
    return LayeredNet([nn.Sequential(*g) for g in groups], spec, in_shape, num_classes, widths)


def _init(net: nn.Module, spec: ArchSpec) -> None:
    for m in net.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            if spec.init == "default":
                if spec.kind == "resnet18" and isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                continue
            fan_in = nn.init._calculate_correct_fan(m.weight, "fan_in")
            if spec.init == "he_uniform":
                bound = math.sqrt(6.0 / fan_in)
                nn.init.uniform_(m.weight, -bound, bound)
            elif spec.init == "he_normal":
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_in))
            elif spec.init == "xavier_uniform":
                nn.init.xavier_uniform_(m.weight)
            elif spec.init == "lecun_normal":
                nn.init.normal_(m.weight, 0.0, 1.0 / math.sqrt(fan_in))
            elif spec.init == "zeros":
                nn.init.zeros_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
