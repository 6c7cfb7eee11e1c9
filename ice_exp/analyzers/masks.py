"""Hard parser masks: morphology and resizing, under the two mask conventions a parser can follow.

``image`` (ours, the default): masks are made and morphed at the image's side; the kernel side is an odd
``ks_ratio`` share of it; erosion leaves a region that touches the image border intact along that border.
``seed`` (the original ICE code's glue): masks are made and morphed at the parser network's input side
(512 px for BiSeNet) with a kernel of ``int(ks_ratio * side)`` pixels, as kornia's morphology with
``border_type='constant'``: beyond the border counts as outside the region, so erosion eats in from
it. docs/method.md, "The seed's analyzer glue", says why ours is the default.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from ice_exp.common.images import resize

MASK_MODES = ("image", "seed")
MORPHOLOGIES = ("none", "dilate", "erode", "ring")


def check_morphology(op: str, ks_ratio: float) -> None:
    if op not in MORPHOLOGIES:
        raise ValueError(f"morphology: unknown {op!r}; allowed values: {', '.join(MORPHOLOGIES)}")
    if not 0 <= ks_ratio < 1:
        raise ValueError(f"ks_ratio: must be in [0, 1) (a fraction of the image side), got {ks_ratio}")


def kernel_side(ks_ratio: float, resolution: int, mode: str = "image") -> int:
    """Square-kernel side for a ratio of the mask's side.

    ``image``: odd, and at least 3 for any ratio > 0, so that a dilation always covers the 1-pixel
    anti-aliased edge of a region, as the seed's ratios do at 512 px and above. ``seed``: the seed's
    ``int(ks_ratio * 512)`` on the network's side (25 for 0.05, 102 for 0.2: it may be even)."""
    if mode == "seed":
        return max(1, int(ks_ratio * resolution))
    if ks_ratio <= 0:
        return 1
    return max(3, round(ks_ratio * resolution) // 2 * 2 + 1)


def window_max(mask: Tensor, k: int, outside: float) -> Tensor:
    """Max over the k x k window of every pixel, the image padded with ``outside``. The window spans
    [i - k // 2, i + k - 1 - k // 2] (kornia's default origin; centred for odd k)."""
    lo, hi = k // 2, k - 1 - k // 2
    return F.max_pool2d(F.pad(mask, (lo, hi, lo, hi), value=outside), k, stride=1)


def morph(mask: Tensor, op: str, ks_ratio: float, mode: str = "image") -> Tensor:
    """Dilate / erode / ring (dilated AND NOT eroded) a [B, 1, r, r] {0,1} mask with a square kernel of
    ``kernel_side(ks_ratio, r, mode)``; ``seed`` erosion counts beyond the border as outside the region."""
    check_morphology(op, ks_ratio)
    if op == "none":
        return mask
    k = kernel_side(ks_ratio, mask.shape[-1], mode)
    dilated = window_max(mask, k, 0.0)
    eroded = 1 - window_max(1 - mask, k, 1.0 if mode == "seed" else 0.0)
    return {"dilate": dilated, "erode": eroded, "ring": dilated * (1 - eroded)}[op]


def resize_mask(mask: Tensor, side: int, any_coverage: bool = False) -> Tensor:
    """A {0,1} mask brought to ``side`` (bilinear), kept where the resized value is > 0.5, or > 0 with
    ``any_coverage``. The seed does both: it resizes its integer label mask (torchvision rounds: > 0.5)
    and, inside a criterion, its boolean mask (torchvision casts it to float and back: any overlap)."""
    resized = resize(mask, side)
    return (resized > 0 if any_coverage else resized > 0.5).to(mask.dtype)


def work_mask(mask: Tensor, size: int, mode: str) -> Tensor:
    """An image-size hard mask at a criterion's work size ``size``: the pixels mostly inside the region
    (``image``) or every pixel the region reaches (``seed``)."""
    return resize_mask(mask, size, any_coverage=mode == "seed")
