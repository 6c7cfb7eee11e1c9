"""StyleGAN2(-ADA) generator, written for ice-exp, with NVlabs' parameter names, shapes and arithmetic.

Module and parameter names mirror NVlabs stylegan2-ada-pytorch ``training/networks.py`` exactly
(``mapping.fc0.weight``, ``synthesis.b8.conv0.affine.bias``, ``synthesis.b4.const`` ...), so their
``G_ema.state_dict()`` loads 1:1 and images match theirs to float rounding: the order of operations
(demodulation ``rsqrt(sum w^2 + 1e-8)``, noise added before bias + activation, activation gain and clamp,
transposed-convolution upsampling followed by the [1,3,3,1] FIR filter, skip-connection RGB upsampling)
is theirs. Differences, all deliberate:

- The affine layers are split from the convolutions: ``styles(ws)`` computes every affine output (space S)
  and ``forward(styles)`` renders from them, so S can be edited directly. ToRGB's ``weight_gain`` is applied
  inside the synthesis, so S holds the raw affine outputs (as StyleSpace / the TF original define them).
- fp32 only: ``num_fp16_res`` / ``use_fp16`` are accepted and ignored (as NVlabs' ``force_fp32=True``).
- Only the 'skip' architecture and unconditional generators (``c_dim == 0``), which is what every public
  StyleGAN2 FFHQ generator is.
- No training machinery (w_avg tracking, style mixing, gradient fixes).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ice_exp.generators.base import Frame, Generator
from ice_exp.generators.stylegan2.upfirdn import setup_filter, upfirdn2d, upsample2d

FIR = (1, 3, 3, 1)

# name -> (function, default gain), as NVlabs bias_act.activation_funcs
ACTIVATIONS: dict[str, tuple[Callable[[Tensor], Tensor], float]] = {
    "linear": (lambda x: x, 1.0),
    "relu": (F.relu, math.sqrt(2)),
    "lrelu": (lambda x: F.leaky_relu(x, 0.2), math.sqrt(2)),
}


def _activation(name: str) -> tuple[Callable[[Tensor], Tensor], float]:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation: {name!r} not supported; allowed values: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def bias_act(x: Tensor, b: Tensor | None = None, act: str = "linear", gain: float | None = None,
             clamp: float | None = None) -> Tensor:
    """x + b (along dim 1) -> activation -> * gain (default: the activation's) -> clamp to +-clamp."""
    func, default_gain = _activation(act)
    if b is not None:
        x = x + b.reshape([-1 if i == 1 else 1 for i in range(x.ndim)])
    x = func(x)
    gain = default_gain if gain is None else gain
    if gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


def normalize_2nd_moment(x: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def conv2d_resample(x: Tensor, w: Tensor, f: Tensor | None = None, up: int = 1, padding: int = 0,
                    groups: int = 1) -> Tensor:
    """Convolution, optionally upsampling by ``up`` first, as NVlabs' ``conv2d_resample`` computes it for
    the synthesis layers (they pass ``flip_weight = (up == 1)``, which flips no weight in either path):
    plain ``conv2d`` without upsampling; with upsampling a strided transposed convolution and then the FIR
    filter ``f`` with gain ``up**2``."""
    if up == 1:
        return F.conv2d(x, w, padding=padding, groups=groups)
    out_channels, in_per_group, kh, kw = w.shape
    fw, fh = (1, 1) if f is None else (int(f.shape[-1]), int(f.shape[0]))
    px0 = padding + (fw + up - 1) // 2 - (kw - 1)
    px1 = padding + (fw - up) // 2 - (kw - up)
    py0 = padding + (fh + up - 1) // 2 - (kh - 1)
    py1 = padding + (fh - up) // 2 - (kh - up)
    pxt, pyt = max(min(-px0, -px1), 0), max(min(-py0, -py1), 0)
    # transposed convolution wants [in, out/groups, k, k] per group
    w = w.reshape(groups, out_channels // groups, in_per_group, kh, kw).transpose(1, 2)
    w = w.reshape(groups * in_per_group, out_channels // groups, kh, kw)
    x = F.conv_transpose2d(x, w, stride=up, padding=[pyt, pxt], groups=groups)
    return upfirdn2d(x, f, padding=[px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt], gain=up ** 2)


def modulated_conv2d(x: Tensor, weight: Tensor, styles: Tensor, noise: Tensor | None = None, up: int = 1,
                     padding: int = 0, resample_filter: Tensor | None = None, demodulate: bool = True) -> Tensor:
    """Per-sample convolution with weight[o,i] * styles[b,i], divided by the norm of each output filter
    (``rsqrt(sum w^2 + 1e-8)``) when ``demodulate``; executed as one grouped convolution over the batch
    (NVlabs' fused path), then ``noise`` is added."""
    batch = x.shape[0]
    out_channels, in_channels, kh, kw = weight.shape
    w = weight.unsqueeze(0) * styles.reshape(batch, 1, in_channels, 1, 1)  # [B, O, I, k, k]
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()
        w = w * dcoefs.reshape(batch, out_channels, 1, 1, 1)
    x = x.reshape(1, batch * in_channels, *x.shape[2:])
    w = w.reshape(batch * out_channels, in_channels, kh, kw).to(x.dtype)
    x = conv2d_resample(x, w, f=resample_filter, up=up, padding=padding, groups=batch)
    x = x.reshape(batch, out_channels, *x.shape[2:])
    return x + noise if noise is not None else x


class FullyConnectedLayer(nn.Module):
    """Equalised-learning-rate linear layer: weights stored / lr_multiplier, scaled at run time."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, activation: str = "linear",
                 lr_multiplier: float = 1.0, bias_init: float = 0.0) -> None:
        super().__init__()
        _activation(activation)
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, act=self.activation)


class MappingNetwork(nn.Module):
    """z -> normalize_2nd_moment -> ``num_layers`` FC layers -> w; ``w_avg`` for truncation."""

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, num_ws: int | None, num_layers: int = 8,
                 embed_features: int | None = None, layer_features: int | None = None, activation: str = "lrelu",
                 lr_multiplier: float = 0.01, w_avg_beta: float | None = 0.995) -> None:
        super().__init__()
        if c_dim != 0:
            raise ValueError(f"c_dim: conditional generators are not supported, got c_dim={c_dim}")
        self.z_dim, self.w_dim, self.num_ws, self.num_layers = z_dim, w_dim, num_ws, num_layers
        layer_features = w_dim if layer_features is None else layer_features
        features = [z_dim] + [layer_features] * (num_layers - 1) + [w_dim]
        for idx in range(num_layers):
            layer = FullyConnectedLayer(features[idx], features[idx + 1], activation=activation,
                                        lr_multiplier=lr_multiplier)
            setattr(self, f"fc{idx}", layer)
        self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z: Tensor, truncation_psi: float = 1.0) -> Tensor:
        x = normalize_2nd_moment(z.to(self.w_avg.dtype))
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        if truncation_psi != 1:
            x = self.w_avg.lerp(x, truncation_psi)
        return x


class SynthesisLayer(nn.Module):
    """Modulated 3x3 convolution (optionally upsampling x2), noise, bias, activation, clamp."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, kernel_size: int = 3,
                 up: int = 1, use_noise: bool = True, activation: str = "lrelu",
                 resample_filter: Sequence[float] = FIR, conv_clamp: float | None = None,
                 channels_last: bool = False) -> None:
        super().__init__()
        self.resolution, self.up, self.use_noise, self.activation = resolution, up, use_noise, activation
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.act_gain = _activation(activation)[1]
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def forward(self, x: Tensor, styles: Tensor, noise_mode: str = "const") -> Tensor:
        noise = None
        if self.use_noise and noise_mode == "random":
            shape = [x.shape[0], 1, self.resolution, self.resolution]
            noise = torch.randn(shape, device=x.device, dtype=x.dtype) * self.noise_strength
        elif self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        x = modulated_conv2d(x, self.weight, styles, noise=noise, up=self.up, padding=self.padding,
                             resample_filter=self.resample_filter)
        return bias_act(x, self.bias.to(x.dtype), act=self.activation, gain=self.act_gain, clamp=self.conv_clamp)


class ToRGBLayer(nn.Module):
    """Modulated (not demodulated) 1x1 convolution to RGB; the style is scaled by 1/sqrt(fan_in) here."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, kernel_size: int = 1,
                 conv_clamp: float | None = None, channels_last: bool = False) -> None:
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size ** 2)

    def forward(self, x: Tensor, styles: Tensor) -> Tensor:
        x = modulated_conv2d(x, self.weight, styles * self.weight_gain, demodulate=False)
        return bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution: const input (4x4) or conv0 (up x2), conv1, toRGB added to the upsampled image."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 is_last: bool, architecture: str = "skip", resample_filter: Sequence[float] = FIR,
                 conv_clamp: float | None = None, use_fp16: bool = False, fp16_channels_last: bool = False,
                 **layer_kwargs: Any) -> None:
        super().__init__()
        if architecture != "skip":
            raise ValueError(f"architecture: only 'skip' generators are supported, got {architecture!r}")
        self.in_channels, self.resolution = in_channels, resolution
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim=w_dim, resolution=resolution, up=2,
                                        resample_filter=resample_filter, conv_clamp=conv_clamp, **layer_kwargs)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim=w_dim, resolution=resolution,
                                    conv_clamp=conv_clamp, **layer_kwargs)
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp)

    def forward(self, x: Tensor | None, img: Tensor | None, styles: list[Tensor],
                noise_mode: str = "const") -> tuple[Tensor, Tensor]:
        if self.in_channels == 0:
            x = self.const.to(styles[0].dtype).unsqueeze(0).repeat([styles[0].shape[0], 1, 1, 1])
            x = self.conv1(x, styles[0], noise_mode)
        else:
            x = self.conv0(x, styles[0], noise_mode)
            x = self.conv1(x, styles[1], noise_mode)
        if img is not None:
            img = upsample2d(img, self.resample_filter)
        y = self.torgb(x, styles[-1])
        return x, (img + y if img is not None else y)


def style_layout(img_resolution: int, channel_base: int = 32768, channel_max: int = 512) -> list[tuple[str, int, int]]:
    """(layer name, style width, index into w+) of every affine in block order, computed from the
    configuration alone: b4 [conv1, torgb], then for each resolution [conv0, conv1, torgb]. A style's
    width is its layer's input channels, min(channel_base // res, channel_max)."""
    if img_resolution < 4 or img_resolution & (img_resolution - 1):
        raise ValueError(f"img_resolution: must be a power of two >= 4, got {img_resolution}")
    channels = lambda res: min(channel_base // res, channel_max)  # noqa: E731
    layout = [("b4.conv1", channels(4), 0), ("b4.torgb", channels(4), 1)]
    for k in range(1, int(math.log2(img_resolution)) - 1):
        res = 4 * 2 ** k
        layout += [(f"b{res}.conv0", channels(res // 2), 2 * k - 1), (f"b{res}.conv1", channels(res), 2 * k),
                   (f"b{res}.torgb", channels(res), 2 * k + 1)]
    return layout


class SynthesisNetwork(nn.Module):
    """Blocks b4 ... b<img_resolution>; ``styles`` computes space S, ``forward`` renders it."""

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int, channel_base: int = 32768,
                 channel_max: int = 512, num_fp16_res: int = 0, **block_kwargs: Any) -> None:
        super().__init__()
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.layout = style_layout(img_resolution, channel_base, channel_max)
        self.num_ws = self.layout[-1][2] + 1
        self.block_resolutions = [2 ** i for i in range(2, int(math.log2(img_resolution)) + 1)]
        for res in self.block_resolutions:
            in_channels = min(channel_base // (res // 2), channel_max) if res > 4 else 0
            block = SynthesisBlock(in_channels, min(channel_base // res, channel_max), w_dim=w_dim, resolution=res,
                                   img_channels=img_channels, is_last=res == img_resolution, **block_kwargs)
            setattr(self, f"b{res}", block)

    def layer(self, name: str) -> nn.Module:
        """'b8.conv0' -> that layer module."""
        return self.get_submodule(name)

    def styles(self, ws: Tensor) -> list[Tensor]:
        """w+ [B, num_ws, w_dim] -> every affine output, in block order."""
        return [self.layer(name).affine(ws[:, idx]) for name, _, idx in self.layout]

    def forward(self, styles: list[Tensor], noise_mode: str = "const") -> Tensor:
        """Per-layer styles (as ``styles`` returns them) -> image [B, C, R, R] in ~[-1, 1]."""
        if noise_mode not in ("const", "random", "none"):
            raise ValueError(f"noise_mode: {noise_mode!r}; allowed values: const, random, none")
        x = img = None
        i = 0
        for res in self.block_resolutions:
            n = 2 if res == 4 else 3
            x, img = getattr(self, f"b{res}")(x, img, styles[i:i + n], noise_mode)
            i += n
        return img


class StyleGAN2Generator(Generator):
    """The ice-exp Generator for StyleGAN2: z -> w -> w+ -> S (every affine output) -> image.

    Constructor arguments are NVlabs' ``Generator`` init kwargs (what their pickles store), plus
    ``noise_mode`` ('const' = the deterministic per-layer noise images, as the seed) and the default
    ``truncation_psi``. The submodules are registered as ``mapping`` and ``synthesis`` so that the state
    dict has NVlabs' names; since the interface methods carry the same names, the modules themselves are
    reached as ``mapping_network`` and ``synthesis_network``.
    """

    def __init__(self, z_dim: int = 512, c_dim: int = 0, w_dim: int = 512, img_resolution: int = 1024,
                 img_channels: int = 3, mapping_kwargs: dict[str, Any] | None = None,
                 synthesis_kwargs: dict[str, Any] | None = None, noise_mode: str = "const",
                 truncation_psi: float = 1.0) -> None:
        super().__init__()
        synthesis = SynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
                                     **(synthesis_kwargs or {}))
        mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=synthesis.num_ws,
                                 **(mapping_kwargs or {}))
        self._modules["mapping"] = mapping  # not add_module: the names are taken by the interface methods
        self._modules["synthesis"] = synthesis
        self.z_dim, self.w_dim, self.num_ws, self.resolution = z_dim, w_dim, synthesis.num_ws, img_resolution
        self.img_channels = img_channels
        self.style_names = tuple(name for name, _, _ in synthesis.layout)
        self.style_dims = tuple(dim for _, dim, _ in synthesis.layout)
        self.torgb_layers = tuple(i for i, name in enumerate(self.style_names) if name.endswith("torgb"))
        if noise_mode not in ("const", "random", "none"):
            raise ValueError(f"noise_mode: {noise_mode!r}; allowed values: const, random, none")
        self.noise_mode, self.truncation_psi = noise_mode, float(truncation_psi)
        self.checksums: dict[str, str] = {}  # filled by the loaders: {path: sha256}

    @property
    def mapping_network(self) -> MappingNetwork:
        return self._modules["mapping"]  # type: ignore[return-value]

    @property
    def synthesis_network(self) -> SynthesisNetwork:
        return self._modules["synthesis"]  # type: ignore[return-value]

    @property
    def s_dim_without_torgb(self) -> int:
        """Width of S without the toRGB styles (6048 for 1024 config-f; S itself is 9088)."""
        return sum(d for i, d in enumerate(self.style_dims) if i not in self.torgb_layers)

    def mapping(self, z: Tensor, truncation_psi: float | None = None) -> Tensor:
        """z [B, z_dim] -> w [B, w_dim]; ``truncation_psi`` defaults to the generator's own."""
        psi = self.truncation_psi if truncation_psi is None else truncation_psi
        return self.mapping_network(z, truncation_psi=psi)

    def styles(self, ws: Tensor) -> Tensor:
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"styles: w+ must be [B, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}")
        return self.pack(self.synthesis_network.styles(ws))

    def synthesis(self, s: Tensor) -> Frame:
        img = self.synthesis_network(self.unpack(s), noise_mode=self.noise_mode)
        return Frame(image=img * 0.5 + 0.5)

    def weight_checksums(self) -> dict[str, str]:
        return dict(self.checksums)
