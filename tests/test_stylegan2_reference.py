"""Our StyleGAN2 generator against NVlabs' own code (stylegan2-ada-pytorch), 64 px, random weights.

Opt-in: skipped unless ``ICE_NVLABS_REF`` names a folder holding the NVlabs stylegan2-ada-pytorch source
(``training/networks.py``, ``torch_utils/``, ``dnnlib/``), e.g. a checkout of the public repository. That
code is not part of ice-exp and CI never has it; nothing here is needed for CI to pass. Run:

    ICE_NVLABS_REF=/path/to/stylegan2-ada-pytorch .venv/bin/python -m pytest -q tests/test_stylegan2_reference.py

NVlabs' ``Generator`` (config-f channels, 8 mapping layers, fp32, random init with every parameter and
buffer moved off its init: noise strengths, biases, w_avg, const and noise images) is built, its state
dict loaded into ``build_stylegan2(path=None, ...)`` with ``strict=True``, and for the same z both render:
NVlabs ``G(z, None, truncation_psi, noise_mode='const', force_fp32=True)`` against ours
``decode(encode(z, 'z'), 'z').image * 2 - 1`` (psi 1) or ``decode(mapping(z, psi), 'w')`` (psi 0.7). On CPU
NVlabs takes its reference (pure PyTorch) paths for bias_act / upfirdn2d, so no CUDA plugin is built.

float64: NVlabs hard-codes ``torch.float32`` in ``training/networks.py``; for a float64 reference that file
is loaded a second time from a temporary copy with ``torch.float32`` replaced by ``torch.float64`` (nothing
else changes; the ops are dtype-generic and the FIR filters stay float32 buffers, as NVlabs asserts).

Measured on CPU (torch 2.14): float32 images agree to ~5e-8 relative (the only difference is the
``x * 0.5 + 0.5`` of ``Frame.image`` undone by ``* 2 - 1``; the raw synthesis output is bit-identical),
float64 to ~1e-16; w is bit-identical in both.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import warnings
from pathlib import Path

import pytest
import torch

from ice_exp.generators.stylegan2 import build_stylegan2

REF_ENV = "ICE_NVLABS_REF"
R = 64
REL_TOL = {torch.float32: 1e-5, torch.float64: 1e-12}


def _ref_dir() -> Path:
    ref = os.environ.get(REF_ENV)
    if not ref:
        pytest.skip(f"{REF_ENV} is not set: point it at a folder holding NVlabs stylegan2-ada-pytorch "
                    f"(training/networks.py, torch_utils/, dnnlib/) to compare against their generator",
                    allow_module_level=True)
    path = Path(ref).expanduser().resolve()
    if not (path / "training" / "networks.py").is_file() or not (path / "torch_utils").is_dir():
        pytest.skip(f"{REF_ENV}={ref}: no training/networks.py and torch_utils/ there (expected the NVlabs "
                    f"stylegan2-ada-pytorch source)", allow_module_level=True)
    return path


REF = _ref_dir()
_OWNED = ("training", "torch_utils", "dnnlib", "nvlabs_networks_f64")


def _owned(name: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in _OWNED)


@pytest.fixture(scope="module")
def nvlabs(tmp_path_factory):
    """(float32 networks module, float64 networks module) of NVlabs; their packages leave sys.modules after."""
    clashes = sorted(n for n in sys.modules if _owned(n))
    if clashes:
        pytest.skip(f"modules named like NVlabs' are already imported ({', '.join(clashes[:3])}); run this file alone")
    sys.path.insert(0, str(REF))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                nv32 = importlib.import_module("training.networks")
            except ImportError as exc:  # e.g. their dnnlib/util.py wants `requests`
                pytest.skip(f"NVlabs source in {REF} does not import here: {exc}")
            src = (REF / "training" / "networks.py").read_text().replace("torch.float32", "torch.float64")
            path = tmp_path_factory.mktemp("nvlabs_f64") / "nvlabs_networks_f64.py"
            path.write_text(src)
            spec = importlib.util.spec_from_file_location("nvlabs_networks_f64", path)
            nv64 = importlib.util.module_from_spec(spec)
            sys.modules["nvlabs_networks_f64"] = nv64  # their persistence decorator looks the module up
            spec.loader.exec_module(nv64)
        yield nv32, nv64
    finally:
        sys.path.remove(str(REF))
        for name in [n for n in sys.modules if _owned(n)]:
            del sys.modules[name]


def _randomise(G: torch.nn.Module, seed: int) -> None:
    """Move every parameter and buffer off its init (the FIR filters stay)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in G.state_dict().items():
            r = torch.randn(t.shape, generator=g, dtype=t.dtype)
            if name.endswith("resample_filter"):
                continue
            if name.endswith("noise_strength"):
                t.copy_(0.3 * r)
            elif name.startswith("mapping.fc") and name.endswith(".bias"):
                t.copy_(20.0 * r)  # bias_gain = lr_multiplier = 0.01
            elif name.endswith(".bias"):
                t.add_(0.3 * r)  # affine biases start at 1, conv / toRGB biases at 0
            elif name.endswith("w_avg"):
                t.copy_(0.5 * r)
            else:  # weights, const, noise_const
                t.mul_(1 + 0.1 * r).add_(0.05 * r * t.abs().mean())


def _nv_generator(module, conv_clamp: float | None) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        G = module.Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=R, img_channels=3,
                             mapping_kwargs=dict(num_layers=8),
                             synthesis_kwargs=dict(channel_base=32768, channel_max=512, num_fp16_res=0,
                                                   conv_clamp=conv_clamp))
    return G.eval().requires_grad_(False)


def _rel(ref: torch.Tensor, got: torch.Tensor) -> float:
    return ((ref.double() - got.double()).abs().max() / ref.double().abs().max()).item()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("conv_clamp", [None, 256.0, 1.0], ids=["noclamp", "clamp256", "clamp1"])
def test_matches_nvlabs_generator(nvlabs, conv_clamp: float | None, dtype: torch.dtype) -> None:
    nv32, nv64 = nvlabs
    G_nv = _nv_generator(nv32, conv_clamp)
    _randomise(G_nv, seed=1)
    state = G_nv.state_dict()
    ours = build_stylegan2(path=None, resolution=R, z_dim=512, w_dim=512, mapping_layers=8, channel_base=32768,
                           channel_max=512, conv_clamp=conv_clamp)
    ours.load_state_dict(state, strict=True)
    ours = ours.to(dtype)
    if dtype == torch.float64:
        G_nv = _nv_generator(nv64, conv_clamp)
        G_nv.load_state_dict(state)
        G_nv = G_nv.double()
        for name, buf in G_nv.named_buffers():
            if name.endswith("resample_filter"):  # NVlabs asserts float32 filters
                buf.data = buf.data.float()

    z = torch.randn([3, 512], generator=torch.Generator().manual_seed(2), dtype=torch.float64).to(dtype)
    clamp_hits = []
    hooks = [m.register_forward_hook(lambda m, i, o: clamp_hits.append((o.abs() >= conv_clamp).any().item()))
             for m in G_nv.modules() if conv_clamp is not None and type(m).__name__ == "SynthesisLayer"]
    with torch.no_grad():
        for psi in (1.0, 0.7):
            w_nv = G_nv.mapping(z, None, truncation_psi=psi)
            img_nv = G_nv(z, None, truncation_psi=psi, noise_mode="const", force_fp32=True)
            w = ours.mapping(z, truncation_psi=psi)
            if psi == 1.0:
                img = ours.decode(ours.encode(z, "z"), "z").image * 2 - 1
            else:
                img = ours.decode(w, "w").image * 2 - 1
            assert img.dtype == img_nv.dtype == dtype
            assert torch.equal(w_nv, w.unsqueeze(1).expand_as(w_nv)), f"w differs at psi={psi}"
            assert _rel(img_nv, img) <= REL_TOL[dtype], f"psi={psi}: relative error {_rel(img_nv, img):.2e}"
    for h in hooks:
        h.remove()
    if conv_clamp == 1.0:
        assert any(clamp_hits), "the small clamp never bit: the clamp path went untested"
