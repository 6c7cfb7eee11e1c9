"""Pictures of a run: the eigenvalue spectrum and the direction grid (rows = directions, columns = steps)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402
from torchvision.utils import save_image  # noqa: E402

from ice_exp.generators.base import Generator  # noqa: E402
from ice_exp.solvers.base import Problem, Solution  # noqa: E402


def spectrum_plot(problem: Problem, solution: Solution, path: Path, rho: float | None = None) -> None:
    """Normalised eigenvalues of every term (with each suppress ratio; none without Grams) and the solution's σ."""
    fig, ax = plt.subplots(figsize=(6, 4))
    curves = [("activate (PCA)", problem.activate, None)] if problem.activate is not None else []
    curves += [(t.name, t.gram, t.ratio) for t in problem.suppress]
    for name, gram, ratio in curves:
        lam = torch.linalg.eigvalsh(gram.double()).flip(0).clamp_min(1e-18)
        line, = ax.semilogy((lam / lam[0]).cpu().numpy(), label=name)
        if ratio is not None:
            ax.axhline(ratio, color=line.get_color(), ls=":", lw=1)
    if len(solution.sigma):
        sig = solution.sigma.double().cpu()
        ax.semilogy((sig / sig[0]).numpy(), "ko-", ms=3, label="solution σ")
    if rho is not None:
        ax.axhline(rho, color="k", ls=":", lw=1)
    ax.set_title("dotted: each suppress term's ratio (and rho, black)", fontsize=8)
    ax.set_xlabel("index")
    ax.set_ylabel("eigenvalue / largest")
    ax.set_ylim(1e-12, 2)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


@torch.no_grad()
def direction_grid(generator: Generator, space: str, u: Tensor, directions: Tensor, steps: list[float],
                   magnitude: float, path: Path) -> Tensor:
    """Render u + step * magnitude * v for each direction (row) and step (column); saves and returns it."""
    rows = []
    for v in directions.T:
        edits = torch.stack([u + s * magnitude * v.to(u) for s in steps])
        rows.append(generator.decode(edits, space).image.clamp(0, 1))
    grid = torch.cat(rows) if rows else generator.decode(u[None], space).image.clamp(0, 1)
    save_image(grid, path, nrow=len(steps) if rows else 1, padding=2, pad_value=1.0)
    return grid
