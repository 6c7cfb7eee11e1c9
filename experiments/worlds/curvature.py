"""How curved a toyface world is, per task: how far its true subspace turns between faces, whether any
subspace stays pure at every face, and how pure the best fixed subspace can be (the ceiling any global
direction is read against).

``OMP_NUM_THREADS=1 python -m experiments.worlds.curvature --worlds 10-12 --curvatures 0,0.01,0.03,0.1,0.3,1``

Per task and curvature, over the worlds: the median [max] largest principal angle between the local true
subspaces (space s) of two faces, over all pairs of ``--faces`` faces (z #0.. of the world's pool); the
dimension of the subspace that moves the group and no other factor at all of 16 faces (the true dimension
in a linear world, 0 once it curves); and the ceiling, the purity of the best fixed subspace of the true
dimension on ``--faces`` other faces, fitted on faces of its own (``evaluation.ceiling_subspace``), as
``ceiling/purity_mean`` of a run. Prints a markdown table.
"""
from __future__ import annotations

import argparse
import itertools
import statistics

import torch
from torch import Tensor

from ice_exp.common.latents import latent_pool
from ice_exp.common.linalg import principal_angles
from ice_exp.config.task import true_groups
from ice_exp.generators.toyface import ToyFaceGenerator
from ice_exp.generators.toyface.factors import factor_index, true_subspace
from ice_exp.metrics.directional import factor_purity
from ice_exp.run.evaluation import ceiling_subspace


def local_truths(jacobians: Tensor, group: list[int]) -> list[Tensor]:
    """The true subspace at each face, from the factor Jacobians [N, F, D] there."""
    return [true_subspace(j, group) for j in jacobians]


def measure(seed: int, curvature: float, faces: int) -> dict[str, dict[str, float]]:
    generator = ToyFaceGenerator(resolution=32, seed=seed, curvature=curvature, dtype=torch.float64)
    z = latent_pool(seed, max(faces, 16), generator.z_dim).double()
    held_out = latent_pool(seed + 1000, faces, generator.z_dim).double()
    jac = generator.factor_jacobian(generator.encode(z, "s"), "s")
    jac_held_out = generator.factor_jacobian(generator.encode(held_out, "s"), "s")
    out = {}
    for task, factors in true_groups().items():
        group = factor_index(factors)
        truths = local_truths(jac[:faces], group)
        angles = [float(principal_angles(a, b).max()) for a, b in itertools.combinations(truths, 2)]
        fixed = ceiling_subspace(generator, "s", group, len(group), held_out)  # as evaluation.ground_truth
        ceiling = statistics.mean(float(factor_purity(j, group, fixed).mean()) for j in jac_held_out)
        out[task] = {"angles": angles, "pure_dim": true_subspace(jac[:16], group).shape[1], "ceiling": ceiling}
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--worlds", default="10-12", help="first-last generator.seed")
    p.add_argument("--curvatures", default="0,0.01,0.03,0.1,0.3,1", help="comma-separated generator.curvature values")
    p.add_argument("--faces", type=int, default=8, help="faces per world (pairs for the angle; held-out faces for the ceiling)")
    args = p.parse_args(argv)
    first, last = (int(x) for x in args.worlds.split("-"))
    curvatures = [float(c) for c in args.curvatures.split(",")]
    rows = {task: {} for task in true_groups()}
    for c in curvatures:
        per_world = [measure(seed, c, args.faces) for seed in range(first, last + 1)]
        for task in true_groups():
            angles = [a for world in per_world for a in world[task]["angles"]]
            pure = sorted({world[task]["pure_dim"] for world in per_world})
            ceiling = [world[task]["ceiling"] for world in per_world]
            rows[task][c] = (f"{statistics.median(angles):.3g}° [{max(angles):.3g}°]; "
                             f"pure {'/'.join(map(str, pure))}; ceiling {statistics.median(ceiling):.3f} [{min(ceiling):.3f}]")
    print(f"worlds {first}-{last}, {args.faces} faces each: median [max] angle between two faces' true subspaces; "
          f"dimension pure at 16 faces; ceiling purity median [worst]\n")
    print("| task (true dim) | " + " | ".join(f"curvature {c:g}" for c in curvatures) + " |")
    print("|---|" + "---|" * len(curvatures))
    for task, cells in rows.items():
        print(f"| {task} ({len(true_groups()[task])}) | " + " | ".join(cells[c] for c in curvatures) + " |")


if __name__ == "__main__":
    main()
