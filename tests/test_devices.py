"""Device placement. On every machine: an accumulation step and the evaluation create no tensor on torch's
default device (with the default set to ``meta``, any tensor made without naming a device breaks them, as it
would land on the CPU beside CUDA inputs). On a CUDA device (marker ``gpu``; skipped where none exists, so CI
never runs them; experiments/benchmarks/device_check.sh does): a run with ``trainer=gpu`` equals the CPU run,
every module, buffer and tensor attribute of a step lives on the GPU, and no operator of a step computes on
the CPU but the texture criterion's deliberate host step."""
from __future__ import annotations

import traceback

import pytest
import torch
from safetensors.torch import load_file
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from ice_exp.common.linalg import principal_angles
from ice_exp.engine.accumulate import GramAccumulation, accumulate
from ice_exp.run.build import build
from ice_exp.run.discovery import run
from ice_exp.run.evaluation import score
from ice_exp.solvers.base import Problem, views_of
from ice_exp.solvers.peers import shrink_eigenvalues
from tests.conftest import RANDOM_STYLEGAN2, TINY, make_config

STYLEGAN2 = ["experiment=stylegan2/face_boundary", *RANDOM_STYLEGAN2, "samples.indices=[0]", "samples.eval_num=1",
             "counterfactual.enabled=false"]
WORLDS = {"toyface": TINY, "stylegan2_random": STYLEGAN2,
          "toyface_trust": [*TINY, "analyzer/landmarker@trust.landmarker=oracle"]}  # trust analyzers: moved apart
# the texture criterion's prepare: the seeded pick of its points and scipy's Delaunay run on the host, by design
HOST_STEPS = {("ice_exp/criteria/texture.py", "prepare"), ("ice_exp/criteria/texture.py", "barycentric")}


def test_an_accumulation_step_names_the_device_of_every_tensor_it_creates():
    """The step under a ``meta`` default device gives the same Grams as without: nothing in it is made on the
    default device (on a GPU run that is the CPU: a silent host fallback or a device-mismatch error). On the
    StyleGAN2 code path with the real analyzers' networks; toyface's renderer makes 0-dim host constants, which
    CUDA accepts (the GPU tests check it)."""
    built = build(make_config(*WORLDS["stylegan2_random"]), None)
    modules = [GramAccumulation(built.sample_grams) for _ in range(2)]
    modules[0].validation_step(built.z_train[:1], 0)
    with torch.device("meta"):
        modules[1].validation_step(built.z_train[:1], 0)
    for name, accumulator in modules[1].accumulators.items():
        assert accumulator.total.device.type == "cpu"
        torch.testing.assert_close(accumulator.total, modules[0].accumulators[name].total, rtol=0, atol=0)


def test_the_evaluation_names_the_device_of_every_tensor_it_creates():
    """Gain, leakage and trust scores under a ``meta`` default device equal those without (the evaluation's
    random probes were drawn on the default device and broke the first GPU run)."""
    cfg = make_config(*STYLEGAN2, "analyzer/landmarker@trust.landmarker=fan_random", "trust.landmarker.num_modules=2")
    built = build(cfg, None)
    grams = accumulate(built.sample_grams, built.z_train, views=views_of([built.solver], built.terms, built.generator, built.space))
    problem = Problem.of(grams, built.terms, built.generator, built.space)
    solution = built.solver(problem)
    scored = lambda: score(built.generator, built.terms, built.space, problem, solution, built.z_eval, built.truth,  # noqa: E731
                           built.sample_grams, built.trust_terms)
    plain = scored()
    with torch.device("meta"):
        under_meta = scored()
    assert "trust/independent_share" in plain
    assert under_meta.keys() == plain.keys()
    for key, value in plain.items():
        assert under_meta[key] == pytest.approx(value, nan_ok=True), key


class HostOps(TorchDispatchMode):
    """(file, function) of the innermost ice_exp frame of every operator that returns a CPU tensor of more
    than one element."""

    def __init__(self) -> None:
        super().__init__()
        self.places: set[tuple[str, str]] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if any(isinstance(t, Tensor) and t.device.type == "cpu" and t.numel() > 1 for t in tree_flatten(out)[0]):
            ours = [f for f in traceback.extract_stack() if "/ice_exp/" in f.filename]
            self.places.add(("ice_exp/" + ours[-1].filename.split("/ice_exp/")[-1], ours[-1].name) if ours else (str(func), "?"))
        return out


def off_device(module: nn.Module) -> list[str]:
    """Parameters, buffers and plain tensor attributes (caches, masks) of ``module`` that are not on CUDA."""
    named = [*module.named_parameters(), *module.named_buffers()]
    named += [(f"{prefix}.{key}", value) for prefix, sub in module.named_modules() for key, value in vars(sub).items()
              if isinstance(value, Tensor)]
    return [name for name, tensor in named if tensor.device.type != "cuda"]


@pytest.mark.parametrize("world", WORLDS)
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_run_on_the_gpu_equals_the_cpu_run(world, tmp_path):
    """Discovery, evaluation and outputs with trainer=gpu: the same subspace and metrics as on the CPU."""
    metrics = {device: run(make_config(*WORLDS[world], f"trainer={device}"), tmp_path / device) for device in ("cpu", "gpu")}
    subspaces = {device: load_file(str(tmp_path / device / "subspace.safetensors"))["directions"].double() for device in metrics}
    assert subspaces["cpu"].shape == subspaces["gpu"].shape and subspaces["cpu"].shape[1] > 0
    angle = float(principal_angles(subspaces["cpu"], subspaces["gpu"]).max())
    print(f"{world}: largest principal angle GPU vs CPU {angle:.2e} deg")
    assert angle < 0.1
    for key, value in metrics["cpu"].items():
        if key.startswith(("gt/", "eval/gain", "eval/num_directions", "trust/")) and isinstance(value, float):
            assert metrics["gpu"][key] == pytest.approx(value, rel=1e-3, abs=1e-4, nan_ok=True), key


@pytest.mark.parametrize("world", ["toyface", "stylegan2_random"])
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_an_accumulation_step_on_the_gpu_keeps_every_tensor_there(world, monkeypatch, tmp_path):
    """GramAccumulation moved to CUDA: every parameter, buffer and tensor attribute is on the GPU before and after
    one sample's step, its Grams are on the GPU, and only the texture's host step returns CPU tensors."""
    monkeypatch.setenv("ICE_EXP_CACHE", str(tmp_path))  # no cached weights or Grams read from disk inside the step
    built = build(make_config(*WORLDS[world], "trainer=gpu"), None)
    module = GramAccumulation(built.sample_grams).cuda()
    assert off_device(module) == []
    with HostOps() as host:
        module.validation_step(built.z_train[:1].cuda(), 0)
    assert host.places - HOST_STEPS == set()
    assert off_device(module) == []
    assert all(acc.total.device.type == "cuda" for acc in module.accumulators.values())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_robust_pca_shrinkage_of_a_cuda_matrix_equals_the_cpu_one():
    """LowRankGAN's eigenvalue shrinkage: LAPACK's partial route reads host memory, so a CUDA matrix takes the
    full eigendecomposition on the device; both give the same matrix."""
    a = torch.randn(64, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = a @ a.T + 1e-3 * torch.eye(64, dtype=torch.float64)
    shrunk = shrink_eigenvalues(x.cuda(), 1.0)
    assert shrunk.device.type == "cuda"
    torch.testing.assert_close(shrunk.cpu(), shrink_eigenvalues(x, 1.0), rtol=1e-9, atol=1e-9)
