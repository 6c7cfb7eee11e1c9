"""Load a StyleGAN2 generator from the checkpoint files people have, detecting the format from the bytes.

- stylegan2-ada-pytorch / stylegan3-repo ``.pkl``: a dict with ``G_ema``, a ``torch_utils.persistence``
  object. Read with :mod:`ice_exp.checkpoints.safe_pickle` (no code from the file is imported or run, the
  embedded module source is ignored); its ``init_kwargs`` build our network and its ``_parameters`` / ``_buffers`` /
  ``_modules`` give the weights, whose names are ours already.
- The original TensorFlow ``.pkl`` (``stylegan2-ffhq-config-f.pkl``, the seed's): ``(G, D, Gs)`` of
  ``dnnlib.tflib.network.Network`` objects holding ``(name, ndarray)`` variables, read the same way and
  converted as stylegan2-ada-pytorch's ``legacy.convert_tf_generator`` does.
- rosinality ``.pt``: ``torch.save`` of a dict with ``g_ema`` (a state dict), read with
  :func:`ice_exp.checkpoints.read_checkpoint` and renamed to ours.

Every failure is a :class:`CheckpointError` (a ``ValueError``) naming the model, the file and the problem,
raised before any model is returned; a missing file is a ``MissingCheckpoint`` (a ``FileNotFoundError``)
that says where to get it.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ice_exp.checkpoints import CheckpointError, MissingCheckpoint, file_format, located, read_checkpoint, sha256_of
from ice_exp.checkpoints.safe_pickle import EasyDict, Stub, load_pickle
from ice_exp.generators.stylegan2.networks import FIR, StyleGAN2Generator
from ice_exp.generators.stylegan2.upfirdn import setup_filter

__all__ = ["CheckpointError", "PUBLISHED", "load_generator"]

# expected file name -> (what it is, where it is published)
PUBLISHED: dict[str, tuple[str, str]] = {
    "stylegan2-ffhq-config-f.pkl": (
        "NVlabs StyleGAN2 FFHQ 1024 config-f, TensorFlow pickle (the seed's generator)",
        "https://nvlabs-fi-cdn.nvidia.com/stylegan2/networks/stylegan2-ffhq-config-f.pkl (NVlabs/stylegan2 README; also "
        "https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan2/versions/1/files/stylegan2-ffhq-config-f.pkl)"),
    "ffhq.pkl": (
        "stylegan2-ada-pytorch FFHQ 1024",
        "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/ffhq.pkl "
        "(NVlabs/stylegan2-ada-pytorch README)"),
    "ffhq-res1024-mirror-stylegan2-noaug.pkl": (
        "stylegan2-ada-pytorch FFHQ 1024, StyleGAN2 config",
        "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/transfer-learning-source-nets/"
        "ffhq-res1024-mirror-stylegan2-noaug.pkl"),
    "ffhq-res512-mirror-stylegan2-noaug.pkl": (
        "stylegan2-ada-pytorch FFHQ 512, StyleGAN2 config",
        "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/transfer-learning-source-nets/"
        "ffhq-res512-mirror-stylegan2-noaug.pkl"),
    "ffhq-res256-mirror-paper256-noaug.pkl": (
        "stylegan2-ada-pytorch FFHQ 256, paper256 config",
        "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/transfer-learning-source-nets/"
        "ffhq-res256-mirror-paper256-noaug.pkl"),
    "stylegan2-ffhq-config-f.pt": (
        "rosinality/stylegan2-pytorch conversion of the TF config-f checkpoint",
        "made by rosinality's convert_weight.py from stylegan2-ffhq-config-f.pkl, or the 'Pretrained Checkpoints' "
        "Google Drive folder linked in the rosinality/stylegan2-pytorch README "
        "(https://drive.google.com/open?id=1PQutd-JboOCOZqmd95XWxWrO8gGEvRcO)"),
}

MODEL = "StyleGAN2 generator"


def _missing_message(path: Path) -> str:
    if path.name in PUBLISHED:
        what, where = PUBLISHED[path.name]
        source = f"Expected file {path.name!r}: {what}, published at {where}."
    else:
        source = "Expected a StyleGAN2 generator checkpoint; published ones: " + "; ".join(
            f"{name} ({what}) at {where}" for name, (what, where) in PUBLISHED.items()) + "."
    return (f"StyleGAN2 weights not found at {path}. {source} Download it and put it at {path} "
            f"(or point `generator.path` at it); ice-exp never downloads weights itself.")


def load_generator(path: str | Path, noise_mode: str = "const", truncation_psi: float = 1.0,
                   mapping_lr_multiplier: float = 0.01) -> StyleGAN2Generator:
    """Read any supported checkpoint into a :class:`StyleGAN2Generator` in eval mode without parameter
    gradients, with the file's sha256 in ``weight_checksums()``. ``mapping_lr_multiplier`` is used for
    rosinality files only (they do not store it; their default is 0.01, as NVlabs')."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingCheckpoint(_missing_message(path))
    with located(path, MODEL):
        kind = file_format(path)
        if kind in ("zip", "torch-legacy"):
            kwargs, tensors = _read_rosinality(path, mapping_lr_multiplier)
        elif kind == "unknown":
            raise CheckpointError("not a StyleGAN2 checkpoint: its first bytes begin neither a zip archive, a torch "
                                  "file nor a pickle")
        else:
            with open(path, "rb") as f:
                data = load_pickle(f)
            kwargs, tensors = _read_tf(data) if _is_tf(data) else _read_ada(data)
        G = _assemble(kwargs, tensors, noise_mode, truncation_psi)
    G.checksums = {str(path): sha256_of(path)}
    return G


# --- building -------------------------------------------------------------------------------------------
def _assemble(kwargs: dict[str, Any], tensors: dict[str, Tensor], noise_mode: str,
              truncation_psi: float) -> StyleGAN2Generator:
    """Our network from ``kwargs`` with exactly the given weights (``resample_filter`` buffers and a
    missing ``w_avg`` are filled in); any missing, extra or misshapen tensor is a CheckpointError."""
    try:
        G = StyleGAN2Generator(**kwargs, noise_mode=noise_mode, truncation_psi=truncation_psi)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"unsupported generator configuration {kwargs}: {e}") from e
    own = G.state_dict()
    fillable = lambda k: k.endswith("resample_filter") or k == "mapping.w_avg"  # noqa: E731
    filled = {k: v for k, v in own.items() if k not in tensors and fillable(k)}
    missing = [k for k in own if k not in tensors and k not in filled]
    extra = [k for k in tensors if k not in own]
    wrong = [f"{k} {list(tensors[k].shape)} (expected {list(v.shape)})" for k, v in own.items()
             if k in tensors and tensors[k].shape != v.shape]
    if missing or extra or wrong:
        raise CheckpointError(
            f"the weights do not fit a StyleGAN2 generator with {kwargs}: " + "; ".join(
                f"{label} {_few(items)}" for label, items in
                (("missing", missing), ("unexpected", extra), ("wrong shape", wrong)) if items))
    bad = [k for k, t in tensors.items() if not t.is_floating_point() or not bool(torch.isfinite(t).all())]
    if bad:
        raise CheckpointError(f"non-float or non-finite values in {_few(bad)}")
    G.load_state_dict({**filled, **{k: t.to(torch.float32) for k, t in tensors.items()}})
    if "mapping.w_avg" in filled:  # rosinality files without latent_avg: estimate it as NVlabs tracks it
        with torch.no_grad():
            z = torch.randn(4096, G.z_dim, generator=torch.Generator().manual_seed(0))
            G.mapping_network.w_avg.copy_(G.mapping_network(z).mean(0))
    return G.eval().requires_grad_(False)


def _few(items: list[str], n: int = 6) -> str:
    return ", ".join(items[:n]) + (f" (+{len(items) - n} more)" if len(items) > n else "")


# --- stylegan2-ada-pytorch / stylegan3-repo pickles -----------------------------------------------------
_PERSISTENT = "torch_utils.persistence._reconstruct_persistent_obj"
_GENERATOR_ARGS = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs", "synthesis_kwargs")
_IGNORED_SYNTHESIS_KWARGS = ("fused_modconv_default",)  # stylegan3 repo: execution choice, same result


def _persistent_meta(obj: Any) -> dict[str, Any] | None:
    """The meta dict (class_name, module_src, state) of a torch_utils.persistence object, else None."""
    if isinstance(obj, Stub) and obj.qualname == _PERSISTENT and len(obj.args) == 1 and isinstance(obj.args[0], dict):
        return obj.args[0]
    return None


def _module_state(obj: Any) -> dict[str, Any]:
    """The recorded ``__dict__`` of a pickled nn.Module (persistent, or a plain torch.nn module)."""
    meta = _persistent_meta(obj)
    state = meta.get("state") if meta is not None else getattr(obj, "state", None)
    if not isinstance(state, dict) or "_parameters" not in state:
        raise CheckpointError(f"expected a pickled network module, found {obj!r}")
    return state


def _module_tensors(state: dict[str, Any], prefix: str = "") -> dict[str, Tensor]:
    """Flat {dotted name: tensor} of a recorded module's parameters and buffers, recursively."""
    out: dict[str, Tensor] = {}
    for group in ("_parameters", "_buffers"):
        for name, value in (state.get(group) or {}).items():
            if value is None:
                continue
            if not isinstance(value, Tensor):
                raise CheckpointError(f"{prefix}{name} is a {type(value).__name__}, not a tensor")
            out[prefix + name] = value
    for name, child in (state.get("_modules") or {}).items():
        if child is not None:
            out.update(_module_tensors(_module_state(child), f"{prefix}{name}."))
    return out


def _read_ada(data: Any) -> tuple[dict[str, Any], dict[str, Tensor]]:
    if not isinstance(data, dict) or "G_ema" not in data:
        found = sorted(map(str, data.keys())) if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(f"not a StyleGAN2 checkpoint: expected a stylegan2-ada-pytorch pickle with 'G_ema' "
                              f"or a TF (G, D, Gs) pickle, found {found}")
    meta = _persistent_meta(data["G_ema"])
    if meta is None:
        raise CheckpointError(f"'G_ema' is {data['G_ema']!r}, not a torch_utils.persistence network")
    if "class SynthesisInput" in str(meta.get("module_src", "")):
        raise CheckpointError("this is a StyleGAN3 (alias-free) generator; only StyleGAN2 is supported")
    state = _module_state(data["G_ema"])
    init_kwargs = dict(zip(_GENERATOR_ARGS, state.get("_init_args") or ()), **dict(state.get("_init_kwargs") or {}))
    kwargs = {k: init_kwargs.pop(k) for k in _GENERATOR_ARGS[:5] if k in init_kwargs}
    kwargs["mapping_kwargs"] = dict(init_kwargs.pop("mapping_kwargs", None) or {})
    synthesis = {**dict(init_kwargs.pop("synthesis_kwargs", None) or {}), **init_kwargs}  # stylegan3 repo: flat
    kwargs["synthesis_kwargs"] = {k: v for k, v in synthesis.items() if k not in _IGNORED_SYNTHESIS_KWARGS}
    return _plain(kwargs), _module_tensors(state)


def _plain(value: Any) -> Any:
    """EasyDicts and numpy scalars -> plain dicts and Python numbers (clean kwargs and messages)."""
    if isinstance(value, (dict, EasyDict)):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value.item() if isinstance(value, np.generic) else value


# --- TensorFlow pickles -----------------------------------------------------------------------------------
_TF_NETWORK = "dnnlib.tflib.network.Network"
_TF_KNOWN_IGNORED = ("truncation_psi", "truncation_cutoff", "style_mixing_prob", "structure")


def _tf_state(obj: Any) -> dict[str, Any] | None:
    if isinstance(obj, Stub) and obj.qualname == _TF_NETWORK and isinstance(obj.state, dict):
        return obj.state
    return None


def _is_tf(data: Any) -> bool:
    nets = data if isinstance(data, tuple) else (data,)
    return len(nets) > 0 and all(_tf_state(net) is not None for net in nets)


def _tf_variables(state: dict[str, Any], prefix: str = "") -> dict[str, np.ndarray]:
    """{'mapping/Dense0/weight': array, ...}: own variables plus components, as legacy._collect_tf_params."""
    out = {}
    for name, value in state.get("variables", []):
        out[prefix + name] = value
    for name, component in (state.get("components") or {}).items():
        sub = _tf_state(component)
        if sub is None:
            raise CheckpointError(f"TF component {name!r} is not a dnnlib Network")
        out.update(_tf_variables(sub, f"{prefix}{name}/"))
    return out


def _read_tf(data: Any) -> tuple[dict[str, Any], dict[str, Tensor]]:
    state = _tf_state(data[-1] if isinstance(data, tuple) else data)  # (G, D, Gs): Gs is the EMA generator
    if state.get("version", 0) < 4:
        raise CheckpointError(f"TF network pickle version {state.get('version')} is too old (need 4)")
    static = dict(state.get("static_kwargs") or {})
    unknown = sorted(set(static) - set(_TF_KWARGS) - set(_TF_KNOWN_IGNORED))
    if unknown:
        raise CheckpointError(f"unknown TF generator options {unknown}")
    kw = {name: static.get(name, default) for name, default in _TF_KWARGS.items()}
    if kw["label_size"]:
        raise CheckpointError(f"conditional generators are not supported (label_size={kw['label_size']})")
    kwargs = _plain(dict(
        z_dim=kw["latent_size"], w_dim=kw["dlatent_size"], img_resolution=kw["resolution"],
        img_channels=kw["num_channels"],
        mapping_kwargs=dict(num_layers=kw["mapping_layers"], layer_features=kw["mapping_fmaps"],
                            activation=kw["mapping_nonlinearity"], lr_multiplier=kw["mapping_lrmul"]),
        synthesis_kwargs=dict(channel_base=kw["fmap_base"] * 2, channel_max=kw["fmap_max"],
                              num_fp16_res=kw["num_fp16_res"] or 0, conv_clamp=kw["conv_clamp"],
                              architecture=kw["architecture"], resample_filter=list(kw["resample_kernel"]),
                              use_noise=kw["use_noise"], activation=kw["nonlinearity"])))
    tf = _tf_variables(state)
    if any(re.fullmatch(r"synthesis/ToRGB_lod\d+/.*", name) for name in tf):
        raise CheckpointError("'orig'-architecture TF generator (ToRGB_lod*); only 'skip' is supported")
    return kwargs, _convert_tf(tf, kwargs["img_resolution"], kwargs["mapping_kwargs"]["num_layers"])


_TF_KWARGS: dict[str, Any] = {  # TF static kwarg -> default, as legacy.convert_tf_generator
    "latent_size": 512, "label_size": 0, "dlatent_size": 512, "resolution": 1024, "num_channels": 3,
    "mapping_layers": 8, "label_fmaps": None, "mapping_fmaps": None, "mapping_nonlinearity": "lrelu",
    "mapping_lrmul": 0.01, "w_avg_beta": 0.995, "fmap_base": 16384, "fmap_max": 512, "num_fp16_res": 0,
    "conv_clamp": None, "architecture": "skip", "resample_kernel": list(FIR), "use_noise": True,
    "nonlinearity": "lrelu",
}


def _convert_tf(tf: dict[str, np.ndarray], resolution: int, mapping_layers: int) -> dict[str, Tensor]:
    """TF variables -> our names and layouts (dense [in,out] -> [out,in]; conv [k,k,in,out] -> [out,in,k,k],
    flipped for the up-sampling conv that TF ran as a transposed conv; mod_bias + 1; noise [1,1,R,R] -> [R,R])."""
    missing: list[str] = []

    def var(name: str) -> np.ndarray:
        if name not in tf:
            missing.append(name)
            return np.zeros(1, np.float32)
        value = tf[name]
        if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
            raise CheckpointError(f"TF variable {name} is not a float array")
        return value

    out: dict[str, np.ndarray] = {"mapping.w_avg": var("dlatent_avg")}
    for i in range(mapping_layers):
        out[f"mapping.fc{i}.weight"] = var(f"mapping/Dense{i}/weight").T
        out[f"mapping.fc{i}.bias"] = var(f"mapping/Dense{i}/bias")
    out["synthesis.b4.const"] = var("synthesis/4x4/Const/const")[0]

    def layer(ours: str, theirs: str, noise: int | None = None, flip: bool = False, rgb: bool = False) -> None:
        weight = var(f"{theirs}/weight")
        weight = weight[::-1, ::-1] if flip else weight
        out[f"{ours}.weight"] = weight.transpose(3, 2, 0, 1)
        out[f"{ours}.bias"] = var(f"{theirs}/bias")
        out[f"{ours}.affine.weight"] = var(f"{theirs}/mod_weight").T
        out[f"{ours}.affine.bias"] = var(f"{theirs}/mod_bias") + 1
        if not rgb and f"synthesis/noise{noise}" in tf:
            out[f"{ours}.noise_const"] = var(f"synthesis/noise{noise}")[0, 0]
            out[f"{ours}.noise_strength"] = var(f"{theirs}/noise_strength")

    layer("synthesis.b4.conv1", "synthesis/4x4/Conv", noise=0)
    layer("synthesis.b4.torgb", "synthesis/4x4/ToRGB", rgb=True)
    for log2 in range(3, int(math.log2(resolution)) + 1):
        r = 2 ** log2
        layer(f"synthesis.b{r}.conv0", f"synthesis/{r}x{r}/Conv0_up", noise=2 * log2 - 5, flip=True)
        layer(f"synthesis.b{r}.conv1", f"synthesis/{r}x{r}/Conv1", noise=2 * log2 - 4)
        layer(f"synthesis.b{r}.torgb", f"synthesis/{r}x{r}/ToRGB", rgb=True)
    if missing:
        raise CheckpointError(f"TF generator lacks variables {_few(missing)}")
    return {k: torch.from_numpy(np.array(v, dtype=np.float32, order="C")) for k, v in out.items()}  # copies; keeps 0-d


# --- rosinality .pt -----------------------------------------------------------------------------------------
def _read_rosinality(path: Path, lr_multiplier: float) -> tuple[dict[str, Any], dict[str, Tensor]]:
    ckpt = read_checkpoint(path)
    state = ckpt.get("g_ema", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or "style.1.weight" not in state:
        found = sorted(map(str, ckpt))[:10] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(
            f"not a rosinality StyleGAN2 checkpoint (no 'g_ema' with 'style.1.weight'; found {found})")
    latent_avg = ckpt.get("latent_avg") if "g_ema" in ckpt else None
    return _convert_rosinality(state, latent_avg, lr_multiplier)


def _convert_rosinality(sd: dict[str, Tensor], latent_avg: Tensor | None,
                        lr_multiplier: float) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """rosinality names -> ours. Their weights are the same raw (unscaled) values as NVlabs', conv weights
    carry a leading batch axis, noise strengths are [1], the RGB bias is [1,3,1,1], noises.noise_i are
    [1,1,R,R] in layer order; their blur/upsample kernels are [1,3,3,1] and are checked, not loaded."""
    used: set[str] = set()

    def get(name: str) -> Tensor:
        if name not in sd:
            raise CheckpointError(f"rosinality state dict lacks {name!r}")
        used.add(name)
        return sd[name]

    n_mlp = sum(1 for k in sd if re.fullmatch(r"style\.\d+\.weight", k))
    n_blocks = sum(1 for k in sd if re.fullmatch(r"to_rgbs\.\d+\.conv\.weight", k))
    resolution = 2 ** (n_blocks + 2)
    channels = {4: get("conv1.conv.weight").shape[1]}
    channels.update({4 * 2 ** k: get(f"convs.{2 * k - 2}.conv.weight").shape[1] for k in range(1, n_blocks + 1)})
    channel_max, channel_base = channels[4], channels[resolution] * resolution
    if any(min(channel_base // r, channel_max) != c for r, c in channels.items()):
        raise CheckpointError(f"channel counts {channels} do not follow min(channel_base // res, channel_max)")
    w_dim, z_dim = get("style.1.weight").shape
    out: dict[str, Tensor] = {}
    for i in range(n_mlp):
        out[f"mapping.fc{i}.weight"] = get(f"style.{i + 1}.weight")
        out[f"mapping.fc{i}.bias"] = get(f"style.{i + 1}.bias")
    if latent_avg is not None:
        out["mapping.w_avg"] = latent_avg.reshape(-1)
    out["synthesis.b4.const"] = get("input.input")[0]

    def styled(ours: str, theirs: str, noise: int) -> None:
        out[f"{ours}.weight"] = get(f"{theirs}.conv.weight")[0]
        out[f"{ours}.affine.weight"] = get(f"{theirs}.conv.modulation.weight")
        out[f"{ours}.affine.bias"] = get(f"{theirs}.conv.modulation.bias")
        out[f"{ours}.noise_strength"] = get(f"{theirs}.noise.weight").reshape([])
        out[f"{ours}.bias"] = get(f"{theirs}.activate.bias")
        out[f"{ours}.noise_const"] = get(f"noises.noise_{noise}")[0, 0]

    def rgb(ours: str, theirs: str) -> None:
        out[f"{ours}.weight"] = get(f"{theirs}.conv.weight")[0]
        out[f"{ours}.affine.weight"] = get(f"{theirs}.conv.modulation.weight")
        out[f"{ours}.affine.bias"] = get(f"{theirs}.conv.modulation.bias")
        out[f"{ours}.bias"] = get(f"{theirs}.bias").reshape(-1)

    styled("synthesis.b4.conv1", "conv1", 0)
    rgb("synthesis.b4.torgb", "to_rgb1")
    for k in range(1, n_blocks + 1):
        r = 4 * 2 ** k
        styled(f"synthesis.b{r}.conv0", f"convs.{2 * k - 2}", 2 * k - 1)
        styled(f"synthesis.b{r}.conv1", f"convs.{2 * k - 1}", 2 * k)
        rgb(f"synthesis.b{r}.torgb", f"to_rgbs.{k - 1}")
    kernel = setup_filter(FIR) * 4
    for name in [k for k in sd if k.endswith((".blur.kernel", ".upsample.kernel"))]:
        if sd[name].shape != kernel.shape or not torch.allclose(sd[name].float(), kernel):
            raise CheckpointError(f"{name} is not the [1,3,3,1] filter; other filters are not supported")
        used.add(name)
    extra = sorted(set(sd) - used)
    if extra:
        raise CheckpointError(f"unexpected tensors for a rosinality generator: {_few(extra)}")
    kwargs = dict(z_dim=z_dim, w_dim=w_dim, img_resolution=resolution, img_channels=sd["to_rgb1.conv.weight"].shape[1],
                  mapping_kwargs=dict(num_layers=n_mlp, lr_multiplier=lr_multiplier),
                  synthesis_kwargs=dict(channel_base=channel_base, channel_max=channel_max))
    return kwargs, out
