"""The Lightning modules that train BiSeNet and FAN on toyface faces (ice_exp.training.analyzers.data).

Each network sees its input exactly as its analyzer wrapper feeds it (``BiSeNetParser``: the frame resized
to ``size`` and ImageNet-normalised; ``FANLandmarker``: the frame resized to ``size``, [0, 1] RGB), so the
weights load into the wrappers with nothing special-cased. The losses are the networks' authors':
- BiSeNet (facexlib's, from zllrunning/face-parsing.PyTorch): cross-entropy on the main output and on both
  auxiliary heads, summed; the logits are compared with the oracle labels at the frame's resolution, where
  the wrapper reads them (the authors' OHEM selection of hard pixels is left out).
- FAN (Bulat & Tzimiropoulos): MSE between every stack's heatmaps and unit-peak Gaussians (std ``sigma``
  heatmap px) at the oracle landmarks, summed over the stacks; heatmaps are 1/4 of the input side.
Both use AdamW with a one-cycle schedule instead of the authors' SGD / RMSprop, to converge within a short
CPU budget. A step whose gradient norm exceeds ``clip_factor`` times the median of the last CLIP_WINDOW steps'
is scaled down to that bound (a BiSeNet draw without it jumped from loss 0.16 to 1.02 two stretches after the
peak rate and never recovered). The loss and the gradient norm (before clipping) of every step are kept
(``losses``, ``grad_norms``) for the record.
"""
from __future__ import annotations

import statistics
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from face_alignment.models import FAN
from facexlib.parsing import BiSeNet
from torch import Tensor

from ice_exp.analyzers.parsers import BiSeNetParser
from ice_exp.analyzers.points import rescale_points
from ice_exp.common.face_parts import REGIONS
from ice_exp.common.images import resize
from ice_exp.training.analyzers.heatmaps import gaussian_heatmaps

Batch = tuple[Tensor, Tensor, Tensor]  # images [B, 3, R, R], label maps [B, R, R], landmarks [B, 68, 2]
CLIP_WINDOW = 50  # steps whose median gradient norm sets the clipping bound (none is clipped before this many)


class AnalyzerModule(pl.LightningModule):
    """AdamW with a one-cycle schedule over the trainer's steps and gradients clipped relative to their recent
    median (``clip_factor`` None: never); subclasses hold ``net`` and define ``loss``."""

    def __init__(self, net: torch.nn.Module, size: int, lr: float, weight_decay: float, clip_factor: float | None = None) -> None:
        super().__init__()
        if clip_factor is not None and not clip_factor > 1:
            raise ValueError(f"analyzer_net.clip_factor: {clip_factor} clips ordinary steps; give a value > 1 (3 is the default) or null")
        self.net, self.size, self.lr, self.weight_decay, self.clip_factor = net, size, lr, weight_decay, clip_factor
        self.losses: list[Tensor] = []
        self.grad_norms: list[float] = []
        self.clipped_steps = 0

    def outputs(self, images: Tensor) -> list[Tensor]:
        """The network's outputs on images [B, 3, R, R] in ~[0, 1], fed as its analyzer wrapper feeds them."""
        raise NotImplementedError

    def loss(self, batch: Batch) -> Tensor:
        raise NotImplementedError

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        loss = self.loss(batch)
        self.losses.append(loss.detach())
        return loss

    def configure_gradient_clipping(self, optimizer: torch.optim.Optimizer, gradient_clip_val: float | None = None,
                                    gradient_clip_algorithm: str | None = None) -> None:
        """Lightning's hook before every optimiser step: record the gradient norm, clip it to ``clip_factor`` x
        the median of the previous CLIP_WINDOW steps' norms."""
        params = [p for p in self.parameters() if p.grad is not None]
        norm = float(torch.nn.utils.get_total_norm([p.grad for p in params]))
        if self.clip_factor is not None and len(self.grad_norms) >= CLIP_WINDOW:
            bound = self.clip_factor * statistics.median(self.grad_norms[-CLIP_WINDOW:])
            if norm > bound:
                torch.nn.utils.clip_grads_with_norm_(params, bound, torch.tensor(norm))
                self.clipped_steps += 1
        self.grad_norms.append(norm)

    def configure_optimizers(self) -> Any:
        opt = torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, self.lr, total_steps=self.trainer.estimated_stepping_batches)
        return [opt], [{"scheduler": sched, "interval": "step"}]


class BiSeNetModule(AnalyzerModule):
    """facexlib's BiSeNet(num_class=19) against the oracle parser's label maps."""

    def __init__(self, size: int, lr: float, weight_decay: float, clip_factor: float | None = None) -> None:
        super().__init__(BiSeNet(num_class=len(REGIONS)), size, lr, weight_decay, clip_factor)
        self.register_buffer("mean", torch.tensor(BiSeNetParser.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(BiSeNetParser.std).view(1, 3, 1, 1), persistent=False)

    def outputs(self, images: Tensor) -> list[Tensor]:
        """Logits [B, 19, R, R] of the main head and both auxiliary heads, at the images' resolution R; the
        first is what BiSeNetParser reads."""
        return [resize(out, images.shape[-1]) for out in self.net((resize(images, self.size) - self.mean) / self.std)]

    def loss(self, batch: Batch) -> Tensor:
        images, labels, _ = batch
        return sum(F.cross_entropy(out, labels.long()) for out in self.outputs(images))


class FANModule(AnalyzerModule):
    """face-alignment's FAN(num_modules) against Gaussian heatmaps of the oracle landmarks."""

    def __init__(self, size: int, num_modules: int, sigma: float, lr: float, weight_decay: float,
                 clip_factor: float | None = None) -> None:
        super().__init__(FAN(num_modules), size, lr, weight_decay, clip_factor)
        self.sigma = sigma

    def outputs(self, images: Tensor) -> list[Tensor]:
        """Heatmaps [B, 68, size / 4, size / 4] of every stack; the last is what FANLandmarker reads."""
        return self.net(resize(images, self.size))

    def loss(self, batch: Batch) -> Tensor:
        images, _, points = batch
        heatmaps = self.outputs(images)
        side = heatmaps[-1].shape[-1]
        target = gaussian_heatmaps(rescale_points(points, images.shape[-1], side), side, self.sigma)
        return sum(F.mse_loss(h, target) for h in heatmaps)
