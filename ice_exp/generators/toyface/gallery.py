"""Pictures of the toyface world for the README: a gallery of random faces and one strip per factor.

    python -m ice_exp.generators.toyface.gallery [--out docs] [--resolution 256]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torchvision.utils import save_image

from ice_exp.generators.toyface.factors import FACTORS
from ice_exp.generators.toyface.generator import ToyFaceGenerator


@torch.no_grad()
def gallery(generator: ToyFaceGenerator, count: int = 16, seed: int = 0) -> torch.Tensor:
    z = torch.randn(count, generator.z_dim, generator=torch.Generator().manual_seed(seed))
    return generator.decode(generator.encode(z, "s"), "s").image.clamp(0, 1)


def factor_strips(generator: ToyFaceGenerator, values: tuple[float, ...] = (-0.9, -0.45, 0.0, 0.45, 0.9)) -> torch.Tensor:
    """Row per factor: the average face moved along that factor's true direction in S until the factor
    takes each of ``values`` (all other factors stay fixed; the factor's pre-tanh value is linear in s)."""
    s0 = generator.s_mean[None]
    rows = []
    for i, name in enumerate(FACTORS):
        q = generator.true_subspace([name], "s")[:, 0].to(s0)
        f0 = generator.factors(s0)[0, i]
        slope = generator.factor_jacobian(s0, "s")[0, i] @ q / (1 - f0**2)  # of atanh(factor), linear in s
        for target in values:
            s = s0 + (torch.atanh(torch.tensor(target)) - torch.atanh(f0)) / slope * q
            rows.append(generator.decode(s, "s").image.clamp(0, 1).detach())
    return torch.cat(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs", help="folder for toyface_gallery.png and toyface_factors.png")
    parser.add_argument("--resolution", type=int, default=256, help="image side in px")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    g = ToyFaceGenerator(resolution=args.resolution)
    save_image(gallery(g), out / "toyface_gallery.png", nrow=4, padding=2, pad_value=1.0)
    strips = factor_strips(ToyFaceGenerator(resolution=96))
    save_image(strips, out / "toyface_factors.png", nrow=5, padding=1, pad_value=1.0)
    print(f"wrote {out / 'toyface_gallery.png'} and {out / 'toyface_factors.png'} (rows: {', '.join(FACTORS)})")


if __name__ == "__main__":
    main()
