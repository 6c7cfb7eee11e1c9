"""The classifiers a counterfactual explanation explains, behind one interface.

:class:`Classifier` wraps any ``nn.Module`` with the differentiable input transform it was trained with,
so that the search can feed it generator frames (images in ~[0, 1], square) and read the logits of every
head ``[B, H, C]``. Heads are named: the explained one is picked by name (``target``), the others are
what MNAC counts. :class:`CelebAAttrResNet50` is the seed's attribute classifier (docs/method.md §5), built
with d-li14/face-attribute-prediction's module names so that its ``model_best.pth.tar`` loads 1:1.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import ResNet, ResNet50_Weights
from torchvision.models.resnet import Bottleneck

from ice_exp.analyzers.weights import Pretrained
from ice_exp.checkpoints import MissingCheckpoint, load_state, located, read_checkpoint
from ice_exp.common.celeba_attributes import CELEBA_ATTRIBUTES

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CELEBA_SIZE, CELEBA_CROP = 218, (218, 178)  # aligned CelebA images are 218 x 178 (h x w)


class ImageTransform(nn.Module):
    """Differentiable pre-processing from a frame to a classifier's input: resize so that the short side
    is ``size`` (antialiased bilinear, like the PIL resize images are usually prepared with), centre-crop
    to ``crop`` (h, w), normalise with ``mean`` / ``std``. Every step is optional."""

    def __init__(self, size: int | None = None, crop: Sequence[int] | None = None,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> None:
        super().__init__()
        if (mean is None) != (std is None):
            raise ValueError("transform: give both mean and std, or neither")
        self.size, self.crop = size, tuple(crop) if crop is not None else None
        self.register_buffer("mean", None if mean is None else torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", None if std is None else torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if self.size is not None and min(x.shape[-2:]) != self.size:
            h, w = x.shape[-2:]
            scale = self.size / min(h, w)
            x = F.interpolate(x, size=(round(h * scale), round(w * scale)), mode="bilinear", align_corners=False,
                              antialias=True)
        if self.crop is not None:
            (h, w), (ch, cw) = x.shape[-2:], self.crop
            if ch > h or cw > w:
                raise ValueError(f"transform: cannot centre-crop {ch}x{cw} from a {h}x{w} image")
            top, left = (h - ch) // 2, (w - cw) // 2
            x = x[..., top: top + ch, left: left + cw]
        if self.mean is not None:
            x = (x - self.mean.to(x)) / self.std.to(x)
        return x


def celeba_transform() -> ImageTransform:
    """The seed's input transform: short side to 218, centre crop 218 x 178, ImageNet normalisation."""
    return ImageTransform(CELEBA_SIZE, CELEBA_CROP, IMAGENET_MEAN, IMAGENET_STD)


def load_checkpoint(model: nn.Module, path: str | Path) -> Path:
    """Strictly load a checkpoint into ``model`` and return the file read.

    Accepts a file or a folder holding ``model.checkpoint_name``; a ``{'state_dict': ...}`` wrapper and the
    ``module.`` prefix of DataParallel checkpoints are removed. Read with :func:`read_checkpoint` (no pickled
    code runs). A missing file raises ``MissingCheckpoint`` (with ``model.weights_hint``), any other failure
    a ``CheckpointError`` naming the file, the model and the cause (mismatched keys listed)."""
    path = Path(path).expanduser()
    name = getattr(model, "checkpoint_name", None)
    if path.is_dir() and name:
        path = path / name
    if not path.is_file():
        expected = f" Expected {name!r}." if name else ""
        raise MissingCheckpoint(f"{type(model).__name__}: checkpoint {path} does not exist.{expected} "
                                f"{getattr(model, 'weights_hint', '')}".rstrip())
    with located(path, type(model).__name__):
        state = read_checkpoint(path)
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        if isinstance(state, dict):
            state = {str(k).removeprefix("module."): v for k, v in state.items()}
        load_state(model, state)
    return path


class Classifier(Pretrained):
    """A frozen image classifier as the search sees it: frame image [B, 3, R, R] in ~[0, 1] -> logits of
    every head [B, H, C]. ``model`` may return [B, C] (one head), [B, H, C] or a list of H [B, C] (as
    d-li14's ResNet). ``heads`` names the heads in output order; ``target`` names the explained head.
    ``weights`` (optional) is loaded strictly with :func:`load_checkpoint`; ``info`` is a free-form record
    (accuracy, rule, ...) that explanations write next to their results."""

    def __init__(self, model: nn.Module, transform: nn.Module | None = None, heads: Sequence[str] = ("output",),
                 target: str | None = None, weights: str | Path | None = None, info: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.net, self.transform, self.heads = model, transform or nn.Identity(), tuple(heads)
        target = self.heads[0] if target is None else target
        if target not in self.heads:
            raise ValueError(f"classifier.target: unknown head {target!r}; allowed values: {', '.join(self.heads)}")
        self.target, self.target_index = target, self.heads.index(target)
        if weights is not None:
            self.weight_path = load_checkpoint(self.net, weights)
        self.info = dict(info or {})
        self.freeze()

    def forward(self, image: Tensor) -> Tensor:
        out = self.net(self.transform(image))
        out = torch.stack(list(out), 1) if isinstance(out, (list, tuple)) else out
        out = out.unsqueeze(1) if out.dim() == 2 else out
        if out.shape[1] != len(self.heads):
            raise ValueError(f"classifier: the model returned {out.shape[1]} heads, heads names {len(self.heads)}")
        return out


class FcBlock(nn.Module):
    """d-li14's ``fc_block``: Linear -> BatchNorm1d -> Dropout -> ReLU (attribute names kept for loading)."""

    def __init__(self, inplanes: int, planes: int, drop_rate: float = 0.15) -> None:
        super().__init__()
        self.fc, self.bn = nn.Linear(inplanes, planes), nn.BatchNorm1d(planes)
        self.dropout, self.relu = nn.Dropout(drop_rate), nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.dropout(self.bn(self.fc(x))))


class CelebAAttrResNet50(ResNet):
    """The seed's attribute classifier (docs/method.md §5): torchvision's ResNet-50 trunk without ``fc``, a
    shared ``stem`` fc block 2048 -> 512, and per attribute a head ``classifierNN`` = fc block 512 -> 256
    -> Linear(256, 2). Returns logits [B, 40, 2] (class 1 = attribute present). Parameter names equal
    d-li14/face-attribute-prediction's ``models/resnet.py``, so its checkpoints load without renaming."""

    checkpoint_name = "model_best.pth.tar"
    weights_hint = ("It is the d-li14/face-attribute-prediction checkpoint ({'state_dict': ...}, keys prefixed "
                    "'module.'). The seed's weights were never published: train one with "
                    "`python -m ice_exp.training.celeba data_dir=<CelebA folder>` and pass its "
                    "model_best.pth.tar.")

    def __init__(self, num_attributes: int = len(CELEBA_ATTRIBUTES), pretrained: bool = False) -> None:
        super().__init__(Bottleneck, [3, 4, 6, 3])
        if pretrained:  # the recipe starts from ImageNet weights (torchvision downloads them once)
            self.load_state_dict(ResNet50_Weights.IMAGENET1K_V1.get_state_dict(progress=False))
        del self.fc
        self.stem = FcBlock(512 * Bottleneck.expansion, 512)
        for i in range(num_attributes):
            setattr(self, f"classifier{i:02d}", nn.Sequential(FcBlock(512, 256), nn.Linear(256, 2)))
        self.num_attributes = num_attributes

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.stem(torch.flatten(self.avgpool(x), 1))
        return torch.stack([getattr(self, f"classifier{i:02d}")(x) for i in range(self.num_attributes)], 1)


def load_celeba_classifier(path: str | Path) -> CelebAAttrResNet50:
    """A trained :class:`CelebAAttrResNet50` from ``model_best.pth.tar`` (file, or the folder holding it)."""
    model = CelebAAttrResNet50()
    load_checkpoint(model, path)
    return model


def celeba_attr_resnet50(path: str | Path, attribute: str = "Attractive") -> Classifier:
    """The seed's classifier explaining ``attribute`` (any CelebA attribute name), with its input transform."""
    return Classifier(CelebAAttrResNet50(), celeba_transform(), CELEBA_ATTRIBUTES, attribute, weights=path,
                      info={"weights": str(path), "attribute": attribute})
