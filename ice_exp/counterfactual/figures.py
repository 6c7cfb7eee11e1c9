"""Pictures of an explanation: the seed's Fig. 4 layout (rows = samples, columns = the original and its
counterfactual in each subspace, the target probability printed on every image) and the matching
difference maps D = mean over channels |x' − x|."""
from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

HEADER_PX = 22
FLIPPED, KEPT, TEXT_BG = (80, 230, 90), (255, 255, 255), (0, 0, 0)


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _tiles(images: Tensor, tile: int) -> list[Image.Image]:
    """[N, 3, R, R] in ~[0, 1] -> PIL tiles of side ``tile`` (bilinear)."""
    x = F.interpolate(images.float().clamp(0, 1), size=(tile, tile), mode="bilinear", align_corners=False, antialias=True)
    return [Image.fromarray(a) for a in (x.permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)]


def _label(image: Image.Image, text: str, colour: tuple[int, int, int], font: ImageFont.ImageFont) -> Image.Image:
    draw = ImageDraw.Draw(image)
    box = draw.textbbox((3, 2), text, font=font)
    draw.rectangle((box[0] - 2, box[1] - 1, box[2] + 2, box[3] + 1), fill=TEXT_BG)
    draw.text((3, 2), text, fill=colour, font=font)
    return image


def _compose(header: list[str], columns: list[list[Image.Image]], tile: int, path: Path) -> Image.Image:
    """Columns of equal-length tile lists under a header row; saved to ``path``."""
    rows = len(columns[0])
    canvas = Image.new("RGB", (len(columns) * (tile + 2), HEADER_PX + rows * (tile + 2)), "white")
    draw, font = ImageDraw.Draw(canvas), _font(12)
    for c, (name, tiles) in enumerate(zip(header, columns)):
        x = c * (tile + 2)
        draw.text((x + 2, 4), name[: max(4, tile // 7)], fill="black", font=font)
        for r, t in enumerate(tiles):
            canvas.paste(t, (x, HEADER_PX + r * (tile + 2)))
    canvas.save(path)
    return canvas


def score_grid(before: Tensor, p_before: Tensor, after: dict[str, tuple[Tensor, Tensor, Tensor]], path: Path,
               tile: int = 128) -> Image.Image:
    """Fig. 4: ``after`` maps a subspace to (images [N, 3, R, R], p_after [N], flipped [N])."""
    font = _font(max(10, tile // 9))
    columns = [[_label(t, f"p={p:.2f}", KEPT, font) for t, p in zip(_tiles(before, tile), p_before.tolist())]]
    for images, p, flipped in after.values():
        columns.append([_label(t, f"{q:.2f}", FLIPPED if f else KEPT, font)
                        for t, q, f in zip(_tiles(images, tile), p.tolist(), flipped.tolist())])
    return _compose(["original"] + list(after), columns, tile, path)


def difference_grid(before: Tensor, after: dict[str, Tensor], path: Path, tile: int = 128) -> Image.Image:
    """D per subspace in the 'inferno' colour map, each column scaled by its own largest D (printed on its
    first tile), so that small local edits stay visible next to large ones."""
    cmap, font = matplotlib.colormaps["inferno"], _font(max(10, tile // 9))
    columns = [_tiles(before, tile)]
    for images in after.values():
        d = (images - before).abs().mean(1)
        scale = max(float(d.max()), 1e-12)
        rgb = torch.from_numpy(cmap((d / scale).cpu().numpy())[..., :3]).permute(0, 3, 1, 2)
        columns.append(_tiles(rgb, tile))
        _label(columns[-1][0], f"max {scale:.2g}", KEPT, font)
    return _compose(["original"] + list(after), columns, tile, path)
