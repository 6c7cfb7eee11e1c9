"""The toyface truth of the seven tasks (conf/task/*.yaml; docs/worlds.md): measured, not declared.

A task's truth is what its factors measurably do to the drawn face, under the task's own rule (its
conf/task file): "the change stays inside this (3-px dilated) region", "it moves this landmark group",
"every other landmark stays", "it is a uniform colour shift of this region". ``measured_groups`` applies
a rule to every factor of a world at given samples (factor directions moved by forward-mode derivatives,
changes pooled over the samples); the files' ``truth`` (``config.task.true_groups()``) is the answer, and
tests/test_toyface.py checks that it is the measured group in worlds drawn at random, and ``python -m ice_exp.world.truth
--worlds 10-19`` checks any worlds (the world-validity check). The narrowest margins seen: eye openness keeps
99.5-99.9% of its change inside the dilated eyes on nearly closed or wide-open eyes, while face width and
chin shape keep 97-99% of theirs inside the hair's region (the face covers the hair beside it) but move the
jaw, which the hair's rule forbids.
"""
from __future__ import annotations

import argparse
import sys

import torch
from torch import Tensor

from ice_exp.analyzers.base import Parser
from ice_exp.common.face_parts import LANDMARK_GROUPS, NUM_LANDMARKS
from ice_exp.config.task import load_task, true_groups
from ice_exp.criteria.region_colour import fitted_colour
from ice_exp.generators.toyface.factors import FACTORS
from ice_exp.world.oracles import OracleLandmarker, OracleParser

INSIDE = 0.995  # share of a factor's pixel change (squared) that must stay inside its region
STILL_PX = 1e-3  # landmark motion (px per unit factor change) below which a landmark counts as still


def _colour_shift_residual(change: Tensor, mask: Tensor) -> Tensor:
    """Squared residual of a pixel change [B, 3, R, R] after its least-squares fit c·mask, per sample."""
    return (change - fitted_colour(change, mask)[:, :, None, None] * mask).square().sum((1, 2, 3))


def measured_groups(generator, z: Tensor) -> dict[str, tuple[str, ...]]:
    """{task: the factors that follow the task's rule} at the samples z [N, z_dim] of a toyface ``generator``.

    Each factor is moved along its own true direction in S at each face (the same at every face in a linear
    world, the local one in a curved world), one unit of that factor per unit step on average over the
    samples (a face where it saturates does not blow the step up); its pixel change and landmark motion
    (forward-mode derivatives) are pooled over the samples and checked against every task's rule."""
    parser: Parser = OracleParser()
    landmarker = OracleLandmarker()
    s = generator.encode(z, "s").detach()
    with torch.no_grad():
        frame = generator.decode(s, "s")

    def render(v: Tensor) -> tuple[Tensor, Tensor]:
        f = generator.decode(v, "s")
        return f.image, landmarker(f)

    changes = {}
    jacobian = generator.factor_jacobian(s, "s")  # [N, 20, D]
    for name in FACTORS:
        direction = torch.stack([generator.true_subspace([name], "s", z[i:i + 1])[:, 0] for i in range(len(z))]).to(s)
        rate = (jacobian[:, FACTORS.index(name)] * direction).sum(-1).abs().mean()
        changes[name] = torch.func.jvp(render, (s,), (direction / rate,))[1]
    found: dict[str, tuple[str, ...]] = {}
    for task in true_groups():
        rule = load_task(task)
        with torch.no_grad():
            mask = (parser.region_mask(frame, rule.region, soft=True) if rule.colour_shift
                    else parser.region_mask(frame, rule.region, "dilate", rule.dilation))
        moved = list(LANDMARK_GROUPS[rule.moves]) if rule.moves else []
        others = [i for i in range(NUM_LANDMARKS) if i not in moved]
        members = []
        for name, (image, points) in changes.items():
            energy = image.square().sum()
            inside = (_colour_shift_residual(image, mask).sum() < (1 - INSIDE) * energy if rule.colour_shift
                      else (image.square() * mask).sum() >= INSIDE * energy)
            still = not rule.others_still or bool(points[:, others].norm(dim=-1).amax() < STILL_PX)
            group = points[:, moved]
            moves = not moved or bool((group - group.mean(1, keepdim=True)).norm(dim=-1).amax() >= STILL_PX)
            if energy > 0 and inside and still and moves:
                members.append(name)
        found[task] = tuple(members)
    return found


def check_world(seed: int, resolution: int = 128, samples: int = 4, curvature: float = 0.0) -> dict[str, tuple[str, ...]]:
    """The world-validity check: {task: measured group} where it differs from ``config.task.true_groups()`` (empty: valid).
    Samples are z #0.. of the pool seeded with the world's seed, so every world is checked alike."""
    from ice_exp.common.latents import latent_pool
    from ice_exp.generators.toyface.generator import ToyFaceGenerator

    generator = ToyFaceGenerator(resolution=resolution, seed=seed, curvature=curvature)
    measured = measured_groups(generator, latent_pool(seed, samples, generator.z_dim))
    return {t: m for t, m in measured.items() if set(m) != set(true_groups()[t])}


def main(argv: list[str] | None = None) -> int:
    """``python -m ice_exp.world.truth --worlds 10-19``: is each task's truth measurable there?"""
    p = argparse.ArgumentParser(description="toyface world-validity check: each task's true group is what its factors measurably do")
    p.add_argument("--worlds", default="10-19", help="first-last generator.seed")
    p.add_argument("--resolution", type=int, default=128, help="render size (the experiments' 128 px)")
    p.add_argument("--samples", type=int, default=4, help="faces pooled per world")
    p.add_argument("--curvature", type=float, default=0.0, help="generator.curvature of the worlds (0: linear)")
    args = p.parse_args(argv)
    first, last = (int(x) for x in args.worlds.split("-"))
    invalid = 0
    for seed in range(first, last + 1):
        differ = check_world(seed, args.resolution, args.samples, args.curvature)
        invalid += bool(differ)
        print(f"world {seed}: " + ("valid" if not differ else "; ".join(f"{t} measured {m}" for t, m in differ.items())), flush=True)
    print(f"{last - first + 1 - invalid} of {last - first + 1} worlds valid")
    return 1 if invalid else 0


if __name__ == "__main__":
    sys.exit(main())
