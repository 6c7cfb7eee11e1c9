"""ArcFace identity embedding (docs/method.md §2): insightface arcface_torch's IResNet, rewritten compactly.

The module and parameter names follow arcface_torch's ``backbones/iresnet.py`` exactly (conv1, bn1, prelu,
layer1..4 of IBasicBlock(bn1, conv1, bn2, prelu, conv2, bn3, downsample), bn2, dropout, fc, features),
so its published ``backbone.pth`` state dicts load strictly. Only the inference path is kept (no fp16
autocast, no dilation options); residual sums are out of place so the network works under torch.func.
"""
from __future__ import annotations

from pathlib import Path

import torch.nn.functional as F
from torch import Tensor, nn

from ice_exp.analyzers.weights import Pretrained, WeightSpec
from ice_exp.common.images import resize
from ice_exp.generators.base import Frame

# Blocks per stage of arcface_torch's iresnet18 / 34 / 50 / 100.
IRESNET_LAYERS: dict[int, tuple[int, int, int, int]] = {
    18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 14, 3), 100: (3, 13, 30, 3),
}
ARCFACE_URL = "https://1drv.ms/u/s!AswpsDO2toNKq0lWY69vN58GR6mw?e=p9Ov5d"  # arcface_torch model zoo (OneDrive)


def arcface_weights(depth: int) -> WeightSpec:
    """The model zoo's MS1MV3 ArcFace backbone, kept under its zoo folder name in the torch hub cache."""
    return WeightSpec(
        what=f"ArcFace iresnet{depth} (insightface arcface_torch)",
        file_names=(f"ms1mv3_arcface_r{depth}_fp16/backbone.pth",),
        caches=("torch_hub",),
        url=f"{ARCFACE_URL} (file ms1mv3_arcface_r{depth}_fp16/backbone.pth)",
    )


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, padding=1, bias=False)


class IBasicBlock(nn.Module):
    """Pre-activation-style residual block: BN - conv - BN - PReLU - conv(stride) - BN, plus shortcut."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin, eps=1e-5), _conv3x3(cin, cout)
        self.bn2, self.prelu = nn.BatchNorm2d(cout, eps=1e-5), nn.PReLU(cout)
        self.conv2, self.bn3 = _conv3x3(cout, cout, stride), nn.BatchNorm2d(cout, eps=1e-5)
        self.downsample = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout, eps=1e-5))
            if stride != 1 or cin != cout else None
        )

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (x if self.downsample is None else self.downsample(x))


class IResNet(nn.Module):
    """112x112 input -> 512-d feature (before L2 normalisation)."""

    def __init__(self, depth: int = 100, num_features: int = 512) -> None:
        super().__init__()
        if depth not in IRESNET_LAYERS:
            allowed = ", ".join(map(str, IRESNET_LAYERS))
            raise ValueError(f"depth: unknown iresnet depth {depth}; allowed values: {allowed}")
        self.conv1, self.bn1, self.prelu = _conv3x3(3, 64), nn.BatchNorm2d(64, eps=1e-5), nn.PReLU(64)
        cin = 64
        for stage, (cout, blocks) in enumerate(zip((64, 128, 256, 512), IRESNET_LAYERS[depth]), start=1):
            # every stage opens with a stride-2 block (which carries the downsample shortcut)
            stage_blocks = [IBasicBlock(cin if b == 0 else cout, cout, 2 if b == 0 else 1) for b in range(blocks)]
            setattr(self, f"layer{stage}", nn.Sequential(*stage_blocks))
            cin = cout
        self.bn2 = nn.BatchNorm2d(512, eps=1e-5)
        self.dropout = nn.Dropout(0.0)
        self.fc = nn.Linear(512 * 7 * 7, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=1e-5)

    def forward(self, x: Tensor) -> Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.features(self.fc(self.dropout(self.bn2(x).flatten(1))))


class ArcFaceIdentity(Pretrained):
    """Frame -> image resized to 112 (as the seed: the whole aligned image, no crop), normalised to
    [-1, 1] ((x - 0.5) / 0.5, RGB as arcface_torch) -> IResNet -> L2-normalised embedding [B, 512]."""

    size = 112  # fixed by the network: fc reads a 7x7 map

    def __init__(self, depth: int = 100) -> None:
        super().__init__()
        self.net = IResNet(depth)
        self.freeze()

    def forward(self, frame: Frame) -> Tensor:
        return F.normalize(self.net((resize(frame.image, self.size) - 0.5) / 0.5), dim=1)


def arcface(path: str | Path | None = None, depth: int = 100) -> ArcFaceIdentity:
    """ArcFace with a published arcface_torch ``backbone.pth``: ``path`` (file or folder), else the torch
    hub cache (``<hub>/checkpoints/ms1mv3_arcface_r{depth}_fp16/backbone.pth``)."""
    identity = ArcFaceIdentity(depth)
    identity.load_weights(arcface_weights(depth), path)
    return identity
