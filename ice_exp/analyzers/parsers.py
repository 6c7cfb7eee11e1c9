"""Real face parsers: facexlib's BiSeNet and ParseNet behind the :class:`Parser` interface (docs/method.md §2).

Both networks are facexlib's own classes (so the published state dicts load with their exact key names);
this module only adds the pre-processing each was trained with and the mapping from its label order to
the canonical region names, so that ``regions: [hair]`` selects the same pixels on either parser.
"""
from __future__ import annotations

from pathlib import Path

import torch
from facexlib.parsing import BiSeNet, ParseNet
from torch import Tensor

from ice_exp.analyzers.base import Parser
from ice_exp.analyzers.masks import MASK_MODES
from ice_exp.analyzers.weights import Pretrained, WeightSpec
from ice_exp.common.face_parts import REGIONS
from ice_exp.common.images import resize
from ice_exp.generators.base import Frame

# ParseNet (PSFRGAN / GPEN lineage, used by facexlib's face restoration helper) keeps the original
# CelebAMask-HQ annotation order, which differs from BiSeNet's (= face_parts.REGIONS).
PARSENET_CLASSES: tuple[str, ...] = (
    "background", "skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear",
    "mouth", "u_lip", "l_lip", "hair", "hat", "ear_r", "neck_l", "neck", "cloth",
)

BISENET_WEIGHTS = WeightSpec(
    what="BiSeNet face parser (facexlib)",
    file_names=("parsing_bisenet.pth",),
    caches=("facexlib",),
    url="https://github.com/xinntao/facexlib/releases/download/v0.2.0/parsing_bisenet.pth",
)
PARSENET_WEIGHTS = WeightSpec(
    what="ParseNet face parser (facexlib)",
    file_names=("parsing_parsenet.pth",),
    caches=("facexlib",),
    url="https://github.com/xinntao/facexlib/releases/download/v0.2.2/parsing_parsenet.pth",
)


class NetworkParser(Parser, Pretrained):
    """Resize to the network's input side, normalise, take the class logits, resize them back to the
    frame's resolution and softmax. Subclasses set the network, its label order and its normalisation.

    Hard masks: with ``mask_mode`` ``image`` (ours) the argmax of the resized logits, at image size; with
    ``seed`` the argmax at the network's input side, where the seed also applies its morphology."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    mask_modes = MASK_MODES

    def __init__(self, net: torch.nn.Module, size: int, mask_mode: str = "image") -> None:
        super().__init__(mask_mode)
        self.net, self.size = net, size
        self.register_buffer("_mean", torch.tensor(self.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(self.std).view(1, 3, 1, 1), persistent=False)
        self.freeze()

    def extra_repr(self) -> str:
        return f"size={self.size}, {super().extra_repr()}"

    def logits(self, frame: Frame) -> Tensor:
        """[B, C, size, size] class logits at the network's input side."""
        x = (resize(frame.image, self.size) - self._mean) / self._std
        return self.net(x)[0]  # both networks return (class logits at input size, ...)

    def forward(self, frame: Frame) -> Tensor:
        return resize(self.logits(frame), frame.image.shape[-1]).softmax(1)

    def label_map(self, frame: Frame) -> Tensor:
        if self.mask_mode == "seed":
            return self.logits(frame).argmax(1, keepdim=True)
        return super().label_map(frame)


class BiSeNetParser(NetworkParser):
    """BiSeNet trained on CelebAMask-HQ: 512 px RGB input, ImageNet normalisation, labels in REGIONS order."""

    class_names = REGIONS
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

    def __init__(self, size: int = 512, mask_mode: str = "image") -> None:
        super().__init__(BiSeNet(num_class=19), size, mask_mode)


class ParseNetParser(NetworkParser):
    """ParseNet: 512 px RGB input normalised to [-1, 1] ((x - 0.5) / 0.5), labels in PARSENET_CLASSES order."""

    class_names = PARSENET_CLASSES
    mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)

    def __init__(self, size: int = 512, mask_mode: str = "image") -> None:
        super().__init__(ParseNet(in_size=512, out_size=512, parsing_ch=19), size, mask_mode)


def bisenet(path: str | Path | None = None, size: int = 512, mask_mode: str = "image") -> BiSeNetParser:
    """BiSeNet with its published weights: ``path`` (file or folder), else facexlib's weights folder."""
    parser = BiSeNetParser(size, mask_mode)
    parser.load_weights(BISENET_WEIGHTS, path)
    return parser


def parsenet(path: str | Path | None = None, size: int = 512, mask_mode: str = "image") -> ParseNetParser:
    """ParseNet with its published weights: ``path`` (file or folder), else facexlib's weights folder."""
    parser = ParseNetParser(size, mask_mode)
    parser.load_weights(PARSENET_WEIGHTS, path)
    return parser
