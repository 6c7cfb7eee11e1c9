"""upfirdn2d (upsample, pad, FIR filter, downsample) in plain PyTorch, as NVlabs' reference implementation.

StyleGAN2 resamples with the [1,3,3,1] FIR filter. NVlabs ships a CUDA kernel and a "ref" PyTorch path; we
follow the ref path operation by operation (zero insertion, pad/crop, correlation with the flipped filter,
stride) so that images match theirs to float rounding, run on any device and support double backward.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

Padding = int | Sequence[int]


def setup_filter(f: Sequence[float] | Tensor | None, normalize: bool = True, flip_filter: bool = False,
                 gain: float = 1.0, separable: bool | None = None) -> Tensor:
    """FIR filter as NVlabs' ``setup_filter``: 1-D taps become their outer product (separable only for
    8+ taps), normalised to unit DC gain, float32. ``[1,3,3,1]`` -> the 4x4 filter StyleGAN2 uses."""
    f = torch.as_tensor(1.0 if f is None else f, dtype=torch.float32)
    if f.ndim == 0:
        f = f[None]
    if separable is None:
        separable = f.ndim == 1 and f.numel() >= 8
    if f.ndim == 1 and not separable:
        f = torch.outer(f, f)
    if normalize:
        f = f / f.sum()
    if flip_filter:
        f = f.flip(list(range(f.ndim)))
    return f * (gain ** (f.ndim / 2))


def _pad4(padding: Padding) -> tuple[int, int, int, int]:
    """int | [x, y] | [x0, x1, y0, y1] -> (x0, x1, y0, y1)."""
    if isinstance(padding, int):
        return padding, padding, padding, padding
    padding = [int(p) for p in padding]
    if len(padding) == 2:
        return padding[0], padding[0], padding[1], padding[1]
    x0, x1, y0, y1 = padding
    return x0, x1, y0, y1


def upfirdn2d(x: Tensor, f: Tensor | None, up: int = 1, down: int = 1, padding: Padding = 0,
              flip_filter: bool = False, gain: float = 1.0) -> Tensor:
    """Per channel: insert ``up-1`` zeros after each pixel, pad (negative = crop), convolve with ``f``
    (true convolution unless ``flip_filter``), keep every ``down``-th pixel. Padding is [x0, x1, y0, y1]
    relative to the upsampled image, as in NVlabs and ``scipy.signal.upfirdn``."""
    if f is None:
        f = torch.ones(1, 1, dtype=x.dtype, device=x.device)
    batch, channels, height, width = x.shape
    x0, x1, y0, y1 = _pad4(padding)
    # upsample by zero insertion
    x = x.reshape(batch, channels, height, 1, width, 1)
    x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
    x = x.reshape(batch, channels, height * up, width * up)
    # pad, then crop for negative padding
    x = F.pad(x, [max(x0, 0), max(x1, 0), max(y0, 0), max(y1, 0)])
    x = x[:, :, max(-y0, 0): x.shape[2] - max(-y1, 0), max(-x0, 0): x.shape[3] - max(-x1, 0)]
    # filter: conv2d correlates, so flip for a true convolution
    f = (f * (gain ** (f.ndim / 2))).to(x.dtype)
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))
    f = f[None, None].repeat([channels, 1] + [1] * f.ndim)
    if f.ndim == 4:
        x = F.conv2d(x, f, groups=channels)
    else:
        x = F.conv2d(x, f.unsqueeze(2), groups=channels)
        x = F.conv2d(x, f.unsqueeze(3), groups=channels)
    return x[:, :, ::down, ::down]


def _filter_size(f: Tensor | None) -> tuple[int, int]:
    return (1, 1) if f is None else (int(f.shape[-1]), int(f.shape[0]))


def upsample2d(x: Tensor, f: Tensor | None, up: int = 2, padding: Padding = 0, flip_filter: bool = False,
               gain: float = 1.0) -> Tensor:
    """Upsample by ``up`` with filter ``f``; output size is exactly ``up`` times the input."""
    x0, x1, y0, y1 = _pad4(padding)
    fw, fh = _filter_size(f)
    p = [x0 + (fw + up - 1) // 2, x1 + (fw - up) // 2, y0 + (fh + up - 1) // 2, y1 + (fh - up) // 2]
    return upfirdn2d(x, f, up=up, padding=p, flip_filter=flip_filter, gain=gain * up * up)
