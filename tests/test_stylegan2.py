"""StyleGAN2: resampling, modulated convolution, latent spaces, gradients, and the three checkpoint formats.

Checkpoints are written here in the real layouts from one tiny generator: a stylegan2-ada-pytorch pickle
(torch_utils.persistence objects carrying init_kwargs, module state and embedded module source), a TF
pickle ((G, D, Gs) of dnnlib.tflib.network.Network with (name, ndarray) variables) and a rosinality
torch.save file ({'g_ema': state dict, 'latent_avg', 'args'}). The NVlabs classes are stand-ins registered
under the real module names only while writing; their code raises if ever run, and the embedded module
source would create a marker file if executed.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import math
import os
import pickle
import sys
import time
import types
from collections import OrderedDict
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.signal import convolve2d

from ice_exp.checkpoints.safe_pickle import EasyDict, load_pickle
from ice_exp.generators.stylegan2 import CheckpointError, StyleGAN2Generator, build_stylegan2, load_generator
from ice_exp.generators.stylegan2.networks import modulated_conv2d, style_layout
from ice_exp.generators.stylegan2.upfirdn import setup_filter, upfirdn2d, upsample2d

CONF = Path(__file__).resolve().parents[1] / "conf" / "generator"
TINY = dict(z_dim=8, w_dim=8, img_resolution=32, mapping_kwargs=dict(num_layers=2, lr_multiplier=0.05),
            synthesis_kwargs=dict(channel_base=128, channel_max=16))


def tiny_generator(seed: int = 0, dtype: torch.dtype = torch.float32, **overrides) -> StyleGAN2Generator:
    """A tiny generator whose every weight, bias, noise strength and w_avg is random (nothing inert)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        G = StyleGAN2Generator(**{**TINY, **overrides})
        with torch.no_grad():
            for name, t in G.state_dict().items():
                if name.endswith(("bias", "noise_strength", "w_avg")):
                    scale = 0.3 if name.endswith("noise_strength") else 0.5
                    t.copy_(torch.randn_like(t) * scale + ("affine" in name))
    return G.to(dtype).eval().requires_grad_(False)


# --- upfirdn2d ------------------------------------------------------------------------------------------
def upfirdn_reference(x: np.ndarray, f: np.ndarray, up: int, down: int, pad: tuple[int, int, int, int],
                      gain: float) -> np.ndarray:
    """Direct definition: zero insertion, pad/crop, true 2-D convolution (scipy, 'valid'), decimation."""
    x0, x1, y0, y1 = pad
    out = []
    for img in x.reshape(-1, *x.shape[-2:]):
        u = np.zeros((img.shape[0] * up, img.shape[1] * up))
        u[::up, ::up] = img
        u = np.pad(u, ((max(y0, 0), max(y1, 0)), (max(x0, 0), max(x1, 0))))
        u = u[max(-y0, 0): u.shape[0] - max(-y1, 0), max(-x0, 0): u.shape[1] - max(-x1, 0)]
        out.append(convolve2d(u, f * gain, mode="valid")[::down, ::down])
    return np.stack(out).reshape(*x.shape[:-2], *out[0].shape)


@pytest.mark.parametrize("up,down,pad", [(1, 1, (1, 2, 0, 3)), (2, 1, (2, 1, 2, 1)), (1, 2, (1, 1, 1, 1)),
                                         (3, 2, (-1, 2, 3, -2)), (2, 2, (0, 0, 0, 0))])
def test_upfirdn2d_equals_direct_reference(up: int, down: int, pad: tuple[int, int, int, int]) -> None:
    rng = np.random.default_rng(up * 10 + down)
    x = rng.standard_normal((2, 3, 7, 9))
    f = rng.standard_normal((3, 4))  # asymmetric, so any flip or transposition would show
    got = upfirdn2d(torch.from_numpy(x), torch.from_numpy(f), up=up, down=down, padding=list(pad), gain=1.7)
    np.testing.assert_allclose(got.numpy(), upfirdn_reference(x, f, up, down, pad, 1.7), rtol=1e-10, atol=1e-12)


def test_fir_filter_and_resampling_shapes() -> None:
    f = setup_filter([1, 3, 3, 1])
    np.testing.assert_allclose(f.numpy(), np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64, rtol=1e-7)
    separable = setup_filter(list(range(1, 9)))  # 8+ taps stay 1-D and are applied per axis
    x = torch.randn(1, 2, 12, 12, dtype=torch.float64)
    taps = separable.double().numpy()
    ref = upfirdn_reference(x.numpy(), np.outer(taps, taps), 1, 1, (3, 4, 3, 4), 1.0)
    np.testing.assert_allclose(upfirdn2d(x, separable, padding=[3, 4, 3, 4]).numpy(), ref, rtol=1e-10)
    ones = torch.ones(1, 1, 8, 8)
    assert upsample2d(ones, f).shape[-1] == 16
    assert torch.allclose(upsample2d(ones, f)[..., 2:-2, 2:-2], torch.ones(1)), "unit DC gain after x2 upsampling"


# --- modulated convolution ----------------------------------------------------------------------------------
@pytest.mark.parametrize("up,demodulate", [(1, True), (1, False), (2, True)])
def test_modulated_conv_equals_per_sample_convolution(up: int, demodulate: bool) -> None:
    torch.manual_seed(up)
    x = torch.randn(3, 4, 6, 6, dtype=torch.float64)
    weight = torch.randn(5, 4, 3, 3, dtype=torch.float64)
    styles = torch.randn(3, 4, dtype=torch.float64)
    f = setup_filter([1, 3, 3, 1]).double()
    got = modulated_conv2d(x, weight, styles, up=up, padding=1, resample_filter=f, demodulate=demodulate)
    for b in range(3):
        w = weight * styles[b].reshape(1, -1, 1, 1)
        if demodulate:
            w = w / torch.sqrt(w.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8)
        if up == 1:
            ref = F.conv2d(x[b:b + 1], w, padding=1)
        else:  # NVlabs' generic path: FIR upsampling, then a true convolution (the transposed conv's meaning)
            ref = F.conv2d(upfirdn2d(x[b:b + 1], f, up=2, padding=[3, 2, 3, 2], gain=4), w.flip([2, 3]))
        torch.testing.assert_close(got[b:b + 1], ref, rtol=1e-12, atol=1e-12)


# --- latent spaces ------------------------------------------------------------------------------------------
def test_s_pack_unpack_roundtrip_and_packed_synthesis() -> None:
    G = tiny_generator()
    z = torch.randn(3, G.z_dim)
    s = G.encode(z, "s")
    assert s.shape == (3, G.s_dim) and G.style_names[:3] == ("b4.conv1", "b4.torgb", "b8.conv0")
    parts = G.unpack(s)
    assert [p.shape[1] for p in parts] == list(G.style_dims)
    assert torch.equal(G.pack(parts), s)
    direct = G.decode(z, "z").image
    for space in ("w", "wp", "s"):
        assert torch.equal(G.decode(G.encode(z, space), space).image, direct)
    assert direct.shape == (3, 3, 32, 32) and direct.dtype == torch.float32
    # S holds the raw affine outputs, toRGB ones included (its 1/sqrt(fan_in) gain is applied in synthesis)
    w = G.mapping(z)
    assert torch.equal(parts[1], G.synthesis_network.b4.torgb.affine(w))
    assert torch.equal(parts[-3], G.synthesis_network.b32.conv0.affine(w))


def test_truncation_and_noise_modes() -> None:
    G = tiny_generator()
    z = torch.randn(2, G.z_dim)
    w_avg = G.mapping_network.w_avg
    torch.testing.assert_close(G.mapping(z, truncation_psi=0.0), w_avg.expand(2, -1))
    torch.testing.assert_close(G.mapping(z, 0.5), w_avg + 0.5 * (G.mapping(z, 1.0) - w_avg))
    s = G.encode(z, "s")
    images = {}
    for mode in ("const", "none", "random"):
        G.noise_mode = mode
        images[mode] = G.synthesis(s).image
        assert torch.equal(G.synthesis(s).image, images[mode]) == (mode != "random"), mode
    assert not torch.equal(images["const"], images["none"])


def test_config_f_dims_from_the_configuration() -> None:
    layout = style_layout(1024, channel_base=32768, channel_max=512)
    assert sum(d for _, d, _ in layout) == 9088
    assert sum(d for n, d, _ in layout if not n.endswith("torgb")) == 6048
    assert layout[-1][2] + 1 == 18 and len(layout) == 26
    with torch.device("meta"):  # the real module tree, no memory
        G = StyleGAN2Generator()
    assert (G.s_dim, G.s_dim_without_torgb, G.num_ws, G.space_dim("wp")) == (9088, 6048, 18, 18 * 512)
    assert G.synthesis_network.b1024.torgb.weight.shape == (3, 32, 1, 1)


def test_full_config_f_renders_one_image_on_cpu() -> None:
    start = time.perf_counter()
    G = build_stylegan2(resolution=1024, seed=0)
    with torch.no_grad():
        frame = G.decode(torch.randn(1, 512, generator=torch.Generator().manual_seed(0)), "z")
    assert frame.image.shape == (1, 3, 1024, 1024) and torch.isfinite(frame.image).all()
    assert G.s_dim == 9088 and G.num_ws == 18
    assert time.perf_counter() - start < 60, "config-f on CPU took over a minute"


# --- gradients ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("space", ["z", "w", "wp", "s"])
def test_gradients_match_finite_differences(space: str) -> None:
    G = tiny_generator(dtype=torch.float64, img_resolution=16)
    gen = torch.Generator().manual_seed(1)
    u = G.encode(torch.randn(1, G.z_dim, generator=gen, dtype=torch.float64), space)
    probe = torch.randn(1, 3, 16, 16, generator=gen, dtype=torch.float64)
    f = lambda v: (G.decode(v, space).image * probe).sum()  # noqa: E731
    u = u.detach().requires_grad_(True)
    grad = torch.autograd.grad(f(u), u)[0]
    for _ in range(2):
        v = torch.randn(u.shape, generator=gen, dtype=torch.float64)
        h = 1e-6
        with torch.no_grad():
            fd = (f(u + h * v) - f(u - h * v)) / (2 * h)
        torch.testing.assert_close((grad * v).sum(), fd, rtol=1e-6, atol=1e-8)
    # the project's Jacobian engine uses torch.func (vmapped JVPs and VJPs): both must work and agree
    flat = lambda x: G.decode(x[None], space).image.flatten()[:20]  # noqa: E731
    basis = torch.eye(u.shape[1], dtype=torch.float64)[:3]
    jvp = torch.func.vmap(lambda t: torch.func.jvp(flat, (u[0].detach(),), (t,))[1])(basis)
    _, pullback = torch.func.vjp(flat, u[0].detach())
    vjp = torch.func.vmap(pullback)(torch.eye(20, dtype=torch.float64))[0]
    torch.testing.assert_close(jvp.T, vjp[:, :3], rtol=1e-9, atol=1e-12)


# --- checkpoint writers in the real layouts ---------------------------------------------------------------
EXEC_MARKER = "ice_exp_stylegan2_exec_marker"
# stands for the module source NVlabs pickles embed (and exec on load); ours must never run it
EMBEDDED_SOURCE = (f"import pathlib\npathlib.Path({EXEC_MARKER!r}).touch()\n"
                   "raise RuntimeError('embedded source executed')\n")
NVLABS_CLASS = {"StyleGAN2Generator": "Generator"}


def _never_called(*args, **kwargs):
    raise AssertionError("checkpoint code was executed")


@contextlib.contextmanager
def nvlabs_modules():
    """Register stand-ins for torch_utils.persistence, dnnlib.util and dnnlib.tflib.network while writing."""
    persistence = types.ModuleType("torch_utils.persistence")
    persistence._reconstruct_persistent_obj = _never_called
    util = types.ModuleType("dnnlib.util")
    network = types.ModuleType("dnnlib.tflib.network")

    class EasyDict(dict):
        pass

    class Network:
        def __init__(self, name, static_kwargs, variables, components=None):
            self._state = dict(version=4, name=name, static_kwargs=static_kwargs, components=components or {},
                               build_module_src=EMBEDDED_SOURCE, build_func_name="G_main", variables=variables)

        def __getstate__(self):
            return self._state

        __setstate__ = _never_called

    for obj, module in ((_never_called, persistence), (EasyDict, util), (Network, network)):
        name = "_reconstruct_persistent_obj" if obj is _never_called else obj.__name__
        obj.__module__, obj.__qualname__ = module.__name__, name
        setattr(module, name, obj)
    fake = {"torch_utils": types.ModuleType("torch_utils"), "torch_utils.persistence": persistence,
            "dnnlib": types.ModuleType("dnnlib"), "dnnlib.util": util,
            "dnnlib.tflib": types.ModuleType("dnnlib.tflib"), "dnnlib.tflib.network": network}
    try:
        with mock.patch.dict(sys.modules, fake):
            yield types.SimpleNamespace(EasyDict=EasyDict, Network=Network)
    finally:
        _never_called.__module__, _never_called.__qualname__ = __name__, "_never_called"


class Persistent:
    """Pickles a module as torch_utils.persistence does: _reconstruct_persistent_obj(meta) with the class
    name, the module source and the module's __dict__ (parameters, buffers, submodules, init kwargs)."""

    def __init__(self, module: torch.nn.Module, init_kwargs: dict | None = None) -> None:
        self.module, self.init_kwargs = module, init_kwargs or {}

    def __reduce__(self):
        state = {k: (np.float64(v) if isinstance(v, float) else v) for k, v in self.module.__dict__.items()}
        state["_modules"] = OrderedDict((n, Persistent(c)) for n, c in self.module._modules.items())
        state["_init_args"], state["_init_kwargs"] = (), self.init_kwargs
        name = type(self.module).__name__
        meta = dict(type="class", version=6, module_src=EMBEDDED_SOURCE, class_name=NVLABS_CLASS.get(name, name),
                    state=state)
        return sys.modules["torch_utils.persistence"]._reconstruct_persistent_obj, (meta,), None


def write_ada_pickle(path: Path, G: StyleGAN2Generator, decoy: StyleGAN2Generator, **extra) -> None:
    with nvlabs_modules() as nv:
        init_kwargs = dict(z_dim=G.z_dim, c_dim=0, w_dim=G.w_dim, img_resolution=G.resolution, img_channels=3,
                           mapping_kwargs=nv.EasyDict(TINY["mapping_kwargs"]),
                           synthesis_kwargs=nv.EasyDict(**TINY["synthesis_kwargs"], num_fp16_res=4))
        data = dict(G=Persistent(decoy, init_kwargs), D=Persistent(torch.nn.Linear(2, 2)),
                    G_ema=Persistent(G, init_kwargs), augment_pipe=None,
                    training_set_kwargs=nv.EasyDict(resolution=G.resolution))
        data.update(extra)
        path.write_bytes(pickle.dumps(data, protocol=3))


def tf_variables(G: StyleGAN2Generator) -> tuple[list, list, list]:
    """(Gs own, mapping, synthesis) variables in TF names and layouts (the inverse of legacy.py)."""
    sd = {k: v.numpy() for k, v in G.state_dict().items()}
    mapping = []
    for i in range(G.mapping_network.num_layers):
        mapping += [(f"Dense{i}/weight", sd[f"mapping.fc{i}.weight"].T), (f"Dense{i}/bias", sd[f"mapping.fc{i}.bias"])]
    synthesis = [("4x4/Const/const", sd["synthesis.b4.const"][None])]

    def layer(tf: str, ours: str, flip: bool = False, noise: int | None = None) -> None:
        weight = sd[f"{ours}.weight"].transpose(2, 3, 1, 0)  # [out,in,k,k] -> [k,k,in,out]
        synthesis.extend([(f"{tf}/weight", weight[::-1, ::-1] if flip else weight),
                          (f"{tf}/mod_weight", sd[f"{ours}.affine.weight"].T),
                          (f"{tf}/mod_bias", sd[f"{ours}.affine.bias"] - 1), (f"{tf}/bias", sd[f"{ours}.bias"])])
        if noise is not None:
            synthesis.extend([(f"{tf}/noise_strength", sd[f"{ours}.noise_strength"]),
                              (f"noise{noise}", sd[f"{ours}.noise_const"][None, None])])

    layer("4x4/Conv", "synthesis.b4.conv1", noise=0)
    layer("4x4/ToRGB", "synthesis.b4.torgb")
    for log2 in range(3, int(math.log2(G.resolution)) + 1):
        r = 2 ** log2
        layer(f"{r}x{r}/Conv0_up", f"synthesis.b{r}.conv0", flip=True, noise=2 * log2 - 5)
        layer(f"{r}x{r}/Conv1", f"synthesis.b{r}.conv1", noise=2 * log2 - 4)
        layer(f"{r}x{r}/ToRGB", f"synthesis.b{r}.torgb")
    return [("dlatent_avg", sd["mapping.w_avg"])], mapping, synthesis


def write_tf_pickle(path: Path, G: StyleGAN2Generator, decoy: StyleGAN2Generator, drop: str | None = None) -> None:
    static = dict(num_channels=3, resolution=G.resolution, label_size=0, latent_size=G.z_dim, dlatent_size=G.w_dim,
                  mapping_layers=2, mapping_lrmul=0.05, fmap_base=TINY["synthesis_kwargs"]["channel_base"] // 2,
                  fmap_max=TINY["synthesis_kwargs"]["channel_max"], truncation_psi=0.5)
    with nvlabs_modules() as nv:
        def net(gen: StyleGAN2Generator):
            own, mapping, synthesis = tf_variables(gen)
            synthesis = [(n, v) for n, v in synthesis if n != drop]
            return nv.Network("G", static, own, {"mapping": nv.Network("G_mapping", static, mapping),
                                                 "synthesis": nv.Network("G_synthesis", static, synthesis)})
        D = nv.Network("D", dict(resolution=G.resolution), [("Output/weight", np.zeros((4, 1), np.float32))])
        path.write_bytes(pickle.dumps((net(decoy), D, net(G)), protocol=3))


def rosinality_state(G: StyleGAN2Generator) -> dict[str, torch.Tensor]:
    """G's weights in rosinality/stylegan2-pytorch names and layouts."""
    sd, out = G.state_dict(), {}
    for i in range(G.mapping_network.num_layers):
        out[f"style.{i + 1}.weight"] = sd[f"mapping.fc{i}.weight"]
        out[f"style.{i + 1}.bias"] = sd[f"mapping.fc{i}.bias"]
    out["input.input"] = sd["synthesis.b4.const"][None]
    kernel = setup_filter([1, 3, 3, 1]) * 4
    noises = []

    def styled(theirs: str, ours: str, up: bool = False) -> None:
        out[f"{theirs}.conv.weight"] = sd[f"{ours}.weight"][None]
        out[f"{theirs}.conv.modulation.weight"] = sd[f"{ours}.affine.weight"]
        out[f"{theirs}.conv.modulation.bias"] = sd[f"{ours}.affine.bias"]
        out[f"{theirs}.noise.weight"] = sd[f"{ours}.noise_strength"].reshape(1)
        out[f"{theirs}.activate.bias"] = sd[f"{ours}.bias"]
        if up:
            out[f"{theirs}.conv.blur.kernel"] = kernel
        noises.append(sd[f"{ours}.noise_const"][None, None])

    def rgb(theirs: str, ours: str, up: bool = True) -> None:
        out[f"{theirs}.conv.weight"] = sd[f"{ours}.weight"][None]
        out[f"{theirs}.conv.modulation.weight"] = sd[f"{ours}.affine.weight"]
        out[f"{theirs}.conv.modulation.bias"] = sd[f"{ours}.affine.bias"]
        out[f"{theirs}.bias"] = sd[f"{ours}.bias"].reshape(1, 3, 1, 1)
        if up:
            out[f"{theirs}.upsample.kernel"] = kernel

    styled("conv1", "synthesis.b4.conv1")
    rgb("to_rgb1", "synthesis.b4.torgb", up=False)
    for k in range(1, int(math.log2(G.resolution)) - 1):
        r = 4 * 2 ** k
        styled(f"convs.{2 * k - 2}", f"synthesis.b{r}.conv0", up=True)
        styled(f"convs.{2 * k - 1}", f"synthesis.b{r}.conv1")
        rgb(f"to_rgbs.{k - 1}", f"synthesis.b{r}.torgb")
    out.update({f"noises.noise_{i}": n for i, n in enumerate(noises)})
    return {k: v.clone() for k, v in out.items()}


def write_rosinality(path: Path, G: StyleGAN2Generator, state: dict | None = None) -> None:
    torch.save({"g_ema": rosinality_state(G) if state is None else state, "latent_avg": G.mapping_network.w_avg.clone(),
                "args": argparse.Namespace(size=G.resolution, n_mlp=2)}, path)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """One source generator written in all three formats (each file also holds a decoy G / g)."""
    root = tmp_path_factory.mktemp("ckpt")
    G, decoy = tiny_generator(seed=0), tiny_generator(seed=1)
    paths = dict(ada=root / "network-snapshot.pkl", tf=root / "stylegan2-tiny-config-f.pkl",
                 rosinality=root / "tiny.pt")
    write_ada_pickle(paths["ada"], G, decoy)
    write_tf_pickle(paths["tf"], G, decoy)
    write_rosinality(paths["rosinality"], G)
    return G, paths


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the embedded source would write its marker here


def test_all_three_formats_load_to_identical_outputs(checkpoints) -> None:
    G, paths = checkpoints
    z = torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(5))
    want = G.decode(z, "z").image
    for fmt, path in paths.items():
        loaded = load_generator(path, mapping_lr_multiplier=0.05)
        assert torch.equal(loaded.decode(z, "z").image, want), fmt
        assert torch.equal(loaded.mapping_network.w_avg, G.mapping_network.w_avg), fmt
        assert loaded.weight_checksums() == {str(path): hashlib.sha256(path.read_bytes()).hexdigest()}
        assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    assert not Path(EXEC_MARKER).exists(), "embedded module source was executed"
    assert "torch_utils.persistence" not in sys.modules and "dnnlib.tflib.network" not in sys.modules


def test_ada_pickle_is_read_as_data(checkpoints) -> None:
    _, paths = checkpoints
    with open(paths["ada"], "rb") as f:
        data = load_pickle(f)
    meta = data["G_ema"].args[0]  # the recorded argument of _reconstruct_persistent_obj, never called
    assert meta["class_name"] == "Generator" and meta["module_src"] == EMBEDDED_SOURCE
    assert isinstance(meta["state"]["_init_kwargs"]["synthesis_kwargs"], EasyDict)
    fc0 = meta["state"]["_modules"]["mapping"].args[0]["state"]["_modules"]["fc0"].args[0]["state"]
    assert isinstance(fc0["weight_gain"], np.float64) and isinstance(fc0["_parameters"]["weight"], torch.Tensor)


@pytest.mark.parametrize("protocol", range(6))
def test_safe_pickle_reads_numpy_data_of_every_protocol(protocol: int) -> None:
    """The TF pickles were written by numpy 1.x (numpy.core.* names); both spellings must read."""
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    data = pickle.dumps([a, np.float64(2.5), np.array(1.5, np.float32), b"raw", {1, 2}, np.asfortranarray(a)],
                        protocol=protocol)
    variants = [data] + ([data.replace(b"numpy._core", b"numpy.core")] if protocol < 4 else [])  # 4+: sized strings
    for variant in variants:
        got = load_pickle(io.BytesIO(variant))
        assert np.array_equal(got[0], a) and got[1] == 2.5 and got[2].shape == () and got[3] == b"raw"
        assert got[4] == {1, 2} and np.array_equal(got[5], a)


def test_config_groups_compose(tmp_path) -> None:
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    G = instantiate(OmegaConf.load(CONF / "stylegan2_random.yaml"))
    assert G.decode(torch.randn(1, G.z_dim), "z").image.shape == (1, 3, 32, 32)
    for name, res in (("stylegan2", 1024), ("stylegan2_ffhq512", 512), ("stylegan2_ffhq256", 256)):
        cfg = OmegaConf.load(CONF / f"{name}.yaml")
        assert cfg.resolution == res and cfg.noise_mode == "const" and cfg.truncation_psi == 1.0
        cfg.path = str(tmp_path / Path(cfg.path).name)
        with pytest.raises(Exception, match=Path(cfg.path).name) as info:  # hydra wraps the error it raises
            instantiate(cfg)
        assert isinstance(info.value, FileNotFoundError) or isinstance(info.value.__cause__, FileNotFoundError)


# --- errors -------------------------------------------------------------------------------------------------
def test_missing_file_names_the_file_and_where_it_is_published(tmp_path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        load_generator(tmp_path / "weights" / "stylegan2-ffhq-config-f.pkl")
    text = str(info.value)
    assert str(tmp_path / "weights" / "stylegan2-ffhq-config-f.pkl") in text
    assert "nvlabs-fi-cdn.nvidia.com/stylegan2/networks/stylegan2-ffhq-config-f.pkl" in text
    with pytest.raises(FileNotFoundError, match="rosinality"):
        load_generator(tmp_path / "stylegan2-ffhq-config-f.pt")
    with pytest.raises(FileNotFoundError, match="stylegan2-ada-pytorch"):
        load_generator(tmp_path / "my-own.pkl")


def test_corrupt_and_truncated_files_raise_checkpoint_error(checkpoints, tmp_path) -> None:
    _, paths = checkpoints
    cases = {"empty.pkl": b"", "noise.pkl": os.urandom(4096), "text.pt": b"not a checkpoint\n"}
    for fmt in ("ada", "tf", "rosinality"):
        data = paths[fmt].read_bytes()
        cases[f"truncated-{fmt}{paths[fmt].suffix}"] = data[: len(data) // 2]
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CheckpointError, match=name.replace(".", r"\.")):
            load_generator(tmp_path / name)
    (tmp_path / "list.pkl").write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(CheckpointError, match="G_ema"):
        load_generator(tmp_path / "list.pkl")


def test_wrong_architecture_raises_checkpoint_error(tmp_path) -> None:
    G = tiny_generator()
    wider = tiny_generator(synthesis_kwargs=dict(channel_base=256, channel_max=16))
    write_ada_pickle(tmp_path / "mismatch.pkl", wider, wider)  # init_kwargs say channel_base=128
    with pytest.raises(CheckpointError, match="wrong shape"):
        load_generator(tmp_path / "mismatch.pkl")
    write_tf_pickle(tmp_path / "missing.pkl", G, G, drop="8x8/Conv1/mod_weight")
    with pytest.raises(CheckpointError, match="8x8/Conv1/mod_weight"):
        load_generator(tmp_path / "missing.pkl")
    state = rosinality_state(G)
    del state["convs.1.noise.weight"]
    write_rosinality(tmp_path / "missing.pt", G, state)
    with pytest.raises(CheckpointError, match="convs.1.noise.weight"):
        load_generator(tmp_path / "missing.pt")
    state = rosinality_state(G)
    state["to_rgbs.0.upsample.kernel"] = torch.ones(4, 4) / 4
    write_rosinality(tmp_path / "filter.pt", G, state)
    with pytest.raises(CheckpointError, match="filter"):
        load_generator(tmp_path / "filter.pt")


class Hostile:
    """A pickle payload that runs a shell command when unpickled by an unrestricted loader."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_hostile_pickles_are_refused_without_running(tmp_path) -> None:
    marker = tmp_path / "pwned"
    (tmp_path / "hostile.pkl").write_bytes(pickle.dumps(Hostile(marker)))
    write_ada_pickle(tmp_path / "hostile-inside.pkl", tiny_generator(), tiny_generator(), augment_pipe=Hostile(marker))
    torch.save({"g_ema": Hostile(marker)}, tmp_path / "hostile.pt")
    (tmp_path / "eval.pkl").write_bytes(b"cbuiltins\neval\n(V__import__('os').system('touch " + str(marker).encode()
                                        + b"')\ntR.")
    for name in ("hostile.pkl", "hostile-inside.pkl", "hostile.pt", "eval.pkl"):
        with pytest.raises(CheckpointError, match="refus"):
            load_generator(tmp_path / name)
        assert not marker.exists(), f"{name}: the payload ran"
    assert pickle.loads((tmp_path / "eval.pkl").read_bytes()) == 0 and marker.exists(), "the payload is real"
