"""Toyface faces with the oracles' answers: the training set of the analyzers and the faces they are scored on.

Faces come from many toyface worlds (``generator.seed``), so that a network learns the renderer rather than
one world's read-out; the worlds a network is trained on are disjoint from those it is scored on. Labels are
what the oracle analyzers say: the argmax of the oracle parser's 19 class probabilities (BiSeNet's order,
face_parts.REGIONS) and the oracle's 68 landmarks in image pixels (pixel centres at integers).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.data import TensorDataset

from ice_exp.common.latents import latent_pool
from ice_exp.generators.base import Frame
from ice_exp.generators.toyface import ToyFaceGenerator
from ice_exp.world import OracleLandmarker, OracleParser


@dataclass(frozen=True)
class ToyfaceData:
    """The training faces: ``faces_per_world`` faces of each world first_world .. first_world + worlds - 1."""

    resolution: int = 128
    first_world: int = 100
    worlds: int = 128
    faces_per_world: int = 32

    @property
    def world_seeds(self) -> range:
        return range(self.first_world, self.first_world + self.worlds)


@torch.no_grad()
def world_faces(world: int, pool_seed: int, count: int, resolution: int) -> Frame:
    """Faces z #0..count-1 of the latent pool seeded ``pool_seed`` in toyface world ``world`` (generator.seed)."""
    generator = ToyFaceGenerator(resolution=resolution, seed=world)
    z = latent_pool(pool_seed, count, generator.z_dim)
    return generator.decode(generator.encode(z, "s"), "s")


@torch.no_grad()
def oracle_targets(frame: Frame) -> tuple[Tensor, Tensor]:
    """The oracles' answers: label map [N, R, R] (uint8, REGIONS order) and landmarks [N, 68, 2] in pixels."""
    return OracleParser()(frame).argmax(1).to(torch.uint8), OracleLandmarker()(frame)


def training_set(data: ToyfaceData) -> TensorDataset:
    """(image [3, R, R] in ~[0, 1], label map [R, R], landmarks [68, 2]) of every training face; world w
    contributes z #0.. of the latent pool seeded with w."""
    images, labels, points = [], [], []
    for world in data.world_seeds:
        frame = world_faces(world, world, data.faces_per_world, data.resolution)
        label, point = oracle_targets(frame)
        images.append(frame.image)
        labels.append(label)
        points.append(point)
    return TensorDataset(torch.cat(images), torch.cat(labels), torch.cat(points))
