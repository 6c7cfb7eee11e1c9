"""Training BiSeNet and FAN on toyface (ice_exp.training.analyzers): tiny versions, trained in seconds."""
from __future__ import annotations

import json
import math
import shlex
import sys

import numpy as np
import pytest
import torch
from face_alignment.utils import _get_preds_fromhm
from hydra import compose, initialize_config_dir

from ice_exp.analyzers.fan import FANLandmarker, soft_argmax
from ice_exp.analyzers.parsers import BiSeNetParser
from ice_exp.analyzers.points import rescale_points
from ice_exp.apps import train_analyzer
from ice_exp.checkpoints import CheckpointError, MissingCheckpoint
from ice_exp.common.face_parts import LANDMARK_GROUPS
from ice_exp.config import CONF_DIR
from ice_exp.run.build import build_analyzers
from ice_exp.training.analyzers import recipe
from ice_exp.training.analyzers.data import ToyfaceData, world_faces
from ice_exp.training.analyzers.heatmaps import gaussian_heatmaps, hard_argmax
from ice_exp.training.analyzers.modules import CLIP_WINDOW, BiSeNetModule, FANModule
from ice_exp.training.analyzers.scores import ScoreFaces, background, loss_setback, score, write_scores
from ice_exp.world import OracleLandmarker, OracleParser
from tests.conftest import make_config

TINY_DATA = ToyfaceData(resolution=64, first_world=100, worlds=2, faces_per_world=4)
TINY = {"bisenet": {"name": "bisenet", "size": 64, "steps": 8, "batch_size": 4, "lr": 3e-3, "weight_decay": 0.0, "clip_factor": 3.0},
        "fan": {"name": "fan", "size": 64, "num_modules": 1, "sigma": 1.0, "steps": 8, "batch_size": 4, "lr": 3e-3,
                "weight_decay": 0.0, "clip_factor": 3.0}}
TINY_FACES = ScoreFaces(first_world=10, last_world=11, sample_seeds=(8,), faces=2, resolution=64)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, object]:
    """Both tiny networks trained once into a fresh cache: {name: weight file}."""
    cache = tmp_path_factory.mktemp("cache")
    return {name: recipe.trained_weights(net, TINY_DATA, cache_dir=cache) for name, net in TINY.items()}


@pytest.mark.parametrize("name", ["bisenet", "fan"])
def test_trained_file_is_a_plain_state_dict_that_the_run_config_loads(trained, name: str) -> None:
    path = trained[name]
    state = torch.load(path, map_location="cpu", weights_only=True)
    net = recipe.build_module(TINY[name]).net
    assert list(state) == list(net.state_dict())  # the package's own key names, nothing added
    overrides = (["analyzer/parser=bisenet", f"analyzer.parser.path={path}", "analyzer.parser.size=64"] if name == "bisenet"
                 else ["analyzer/landmarker=fan", f"analyzer.landmarker.path={path}", "analyzer.landmarker.size=64",
                       "analyzer.landmarker.num_modules=1"])
    analyzers = build_analyzers(make_config(*overrides).analyzer)
    model = analyzers.parser if name == "bisenet" else analyzers.landmarker
    assert model.weight_path == path
    assert all(torch.equal(model.net.state_dict()[k], v) for k, v in state.items())


@pytest.mark.parametrize("name", ["bisenet", "fan"])
def test_loss_decreases_and_the_record_says_how(trained, name: str) -> None:
    record = json.loads((trained[name].parent / "record.json").read_text())
    curve = record["loss_curve"]
    assert record["steps"] == len(curve) == TINY[name]["steps"] and record["faces"] == 8
    assert np.mean(curve[-2:]) < 0.8 * np.mean(curve[:2])
    assert record["net"] == TINY[name] and record["data"]["worlds"] == 2
    assert record["total_seconds"] == pytest.approx(record["render_seconds"] + record["train_seconds"], abs=1e-9)
    assert record["threads"] == torch.get_num_threads() and record["accelerator"] == "cpu"
    assert len(record["grad_norm_curve"]) == len(curve) and min(record["grad_norm_curve"]) > 0
    assert record["clipped_steps"] == 0  # fewer steps than the clipping window


def test_second_call_reads_the_cache_and_other_settings_train_again(trained, monkeypatch) -> None:
    def no_training(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(recipe, "train", no_training)
    cache = trained["fan"].parent.parent
    assert recipe.trained_weights(TINY["fan"], TINY_DATA, cache_dir=cache) == trained["fan"]
    with pytest.raises(AssertionError, match="trained again"):
        recipe.trained_weights(TINY["fan"], TINY_DATA, seed=1, cache_dir=cache)


def test_corrupt_or_missing_weights_name_the_file(trained, tmp_path) -> None:
    broken = tmp_path / "parsing_bisenet.pth"
    broken.write_bytes(trained["bisenet"].read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="parsing_bisenet.pth.*truncated"):
        recipe.load_analyzer(TINY["bisenet"], broken)
    with pytest.raises(MissingCheckpoint, match="nothing.pth"):
        recipe.load_analyzer(TINY["fan"], tmp_path / "nothing.pth")


def test_networks_see_their_input_as_the_wrappers_feed_it() -> None:
    """The training forward and the analyzer wrapper give the same logits / landmarks from the same weights."""
    frame = world_faces(100, 100, 2, 64)
    bisenet_module, fan_module = BiSeNetModule(64, 1e-3, 0.0).eval(), FANModule(64, 1, 1.0, 1e-3, 0.0).eval()
    parser, landmarker = BiSeNetParser(64), FANLandmarker(1, 64)
    parser.net.load_state_dict(bisenet_module.net.state_dict())
    landmarker.net.load_state_dict(fan_module.net.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(bisenet_module.outputs(frame.image)[0].softmax(1), parser(frame))
        heatmaps = fan_module.outputs(frame.image)[-1]
        torch.testing.assert_close(rescale_points(soft_argmax(heatmaps.relu()), 16, 64), landmarker(frame))


def test_gaussian_targets_sit_at_the_points_in_the_heatmap_frame() -> None:
    points = torch.tensor([[[5.3, 9.8], [20.0, 11.6]]])
    maps = gaussian_heatmaps(points, 32, 1.0)
    torch.testing.assert_close(soft_argmax(maps), points, atol=1e-4, rtol=0)
    assert (hard_argmax(maps) - points).abs().amax() <= 0.25 + 1e-6


def test_hard_argmax_is_face_alignments_decoding_in_our_pixel_frame() -> None:
    maps = torch.rand(2, 68, 64, 64)
    maps[0, 0, 0, 5] = 2.0  # a peak on the border: no quarter-pixel step
    flat_argmax = maps.flatten(2).argmax(-1).numpy()
    theirs, _ = _get_preds_fromhm.py_func(maps.numpy(), flat_argmax, None, None)  # get_preds_fromhm, uncompiled
    torch.testing.assert_close(hard_argmax(maps), torch.from_numpy(theirs) - 0.5)


def test_background_statistics_of_a_peak_over_a_negative_floor() -> None:
    maps = gaussian_heatmaps(torch.tensor([[[15.0, 15.0]]]), 32, 1.0) - 3e-3
    stats = background(maps)
    assert 0.9 < float(stats["negative_share"]) < 1.0
    torch.testing.assert_close(stats["background_over_peak"], torch.tensor([[-3e-3 / (1 - 3e-3)]]), atol=2e-5, rtol=0)
    positive = maps.clamp(min=0).sum()
    torch.testing.assert_close(stats["negative_mass_ratio"], (maps.clamp(max=0).sum().abs() / positive).view(1, 1))
    assert float(stats["positive_background_share"]) == 0.0  # the Gaussian is below 3e-3 beyond 4 px
    lifted = background(maps + 6e-3)  # a floor of +3e-3 over ~1000 px: ~3 against the peak's 2 pi
    assert 0.25 < float(lifted["positive_background_share"]) < 0.4


def test_the_oracles_score_perfectly_on_drawn_classes_only() -> None:
    results = score(OracleParser(), OracleLandmarker(), TINY_FACES)
    summary = results["summary"]
    assert set(results["per_world"]) == {10, 11}
    assert summary["miou"] == {"median": 1.0, "worst": 1.0} and summary["nme/all"]["worst"] == 0.0
    assert {"iou/hat", "iou/eye_g", "iou/ear_r", "iou/neck_l"}.isdisjoint(summary)
    assert {"iou/skin", "iou/hair", "iou/l_eye", "iou/mouth", "iou/cloth"} <= set(summary)
    assert {k for k in summary if k.startswith("iou_region/")} == {
        f"iou_region/{r}" for r in ("skin+neck", "eyes", "hair", "lips", "face_skin", "mouth_all")}
    assert all(summary[k]["worst"] == 1.0 for k in summary if k.startswith("iou"))


def test_a_trained_fan_gets_every_decoding_scored(trained) -> None:
    summary = score(None, recipe.load_analyzer(TINY["fan"], trained["fan"]), TINY_FACES)["summary"]
    for decoding in ("soft_relu", "soft_sum", "soft_local", "hard"):
        error = summary[f"px/{decoding}/mean"]
        assert 0 < error["median"] <= error["worst"] < math.inf
        if decoding != "soft_sum":  # non-negative weights put every point inside the frame: under its diagonal;
            assert error["worst"] < TINY_FACES.resolution * math.sqrt(2)  # signed ones (soft_sum) need not
        assert {f"nme_{decoding}/{group}" for group in LANDMARK_GROUPS} <= set(summary)
    assert summary["nme_soft_relu/all"] == pytest.approx(summary["nme/all"])  # the wrapper decodes so
    assert 0 <= summary["heatmap/negative_share"]["median"] <= 1 and "nme/jaw" in summary


def test_the_app_reads_the_cache_and_writes_the_scores_beside_the_weights(trained, tmp_path, monkeypatch, capsys) -> None:
    folder = trained["bisenet"].parent
    overrides = [f"{k}={v}" for k, v in {**{f"analyzer_net.{k}": v for k, v in TINY["bisenet"].items()},
                                          **{f"data.{k}": v for k, v in vars(TINY_DATA).items()},
                                          "analyzer_scores.last_world": 10, "analyzer_scores.faces": 2,
                                          "analyzer_scores.resolution": 64, "cache_dir": folder.parent,
                                          "hydra.run.dir": tmp_path}.items()]
    monkeypatch.setattr(recipe, "train", lambda *a, **k: pytest.fail("trained again"))
    monkeypatch.setattr(sys, "argv", ["ice-train-analyzer", *overrides])
    train_analyzer.main()
    assert {p.name for p in folder.iterdir()} == {"parsing_bisenet.pth", "record.json", "scores.json", "scores.md"}
    assert json.loads((folder / "scores.json").read_text())["faces"]["last_world"] == 10
    assert "| miou |" in (folder / "scores.md").read_text() and f"weights: {trained['bisenet']}" in capsys.readouterr().out
    assert "0 of 8 steps clipped (clip_factor 3.0)" in (folder / "scores.md").read_text()


def test_a_loss_that_rose_mid_training_is_flagged_in_the_scores(tmp_path) -> None:
    assert loss_setback([4.0, 2.0, 1.0, 0.5, 3.0, 1.0]) == (6.0, 4)  # stretch 5 rose to 6x the lowest before it
    assert loss_setback([4.0, 2.0, 2.5, 1.0]) == (1.25, 2) and loss_setback([3.0, 2.0, 1.0]) == (1.0, 0)
    record = {"net": TINY["fan"], "data": vars(TINY_DATA), "seed": 0, "total_seconds": 1.0, "render_seconds": 0.5,
              "cpu_seconds": 1.0, "threads": 1, "accelerator": "cpu"}
    results = {"summary": {"nme/all": {"median": 0.1, "worst": 0.2}}}
    for curve, flagged in [([0.05, 0.006, 0.04, 0.002], True), ([0.05, 0.006, 0.007, 0.002], False)]:
        write_scores(results, tmp_path / "scores.json", TINY_FACES, {**record, "loss_curve": curve})
        text = (tmp_path / "scores.md").read_text()
        assert ("rose to 6.7x its earlier lowest in stretch 3 of 4" in text) == flagged and "| nme/all | 0.1 | 0.2 |" in text


def test_a_gradient_far_above_its_recent_median_is_clipped_to_the_bound() -> None:
    """clip_factor 3 over a history of unit norms: a norm-10 gradient is scaled to norm 3 (its recorded norm
    stays 10), a norm-2 one is left; without clip_factor nothing is clipped; a factor <= 1 is refused."""
    def step(module: FANModule, norm: float) -> float:
        grads = [torch.randn_like(p) for p in module.parameters()]
        scale = norm / float(torch.nn.utils.get_total_norm(grads))
        for p, g in zip(module.parameters(), grads):
            p.grad = g * scale
        module.configure_gradient_clipping(None)
        return float(torch.nn.utils.get_total_norm([p.grad for p in module.parameters()]))

    clipped, plain = FANModule(64, 1, 1.0, 1e-3, 0.0, clip_factor=3.0), FANModule(64, 1, 1.0, 1e-3, 0.0)
    assert step(clipped, 10.0) == pytest.approx(10.0, rel=1e-4)  # no history yet: never clipped
    for module in (clipped, plain):
        module.grad_norms = [1.0] * CLIP_WINDOW
    assert step(clipped, 10.0) == pytest.approx(3.0, rel=1e-4) and clipped.grad_norms[-1] == pytest.approx(10.0, rel=1e-4)
    assert step(clipped, 2.0) == pytest.approx(2.0, rel=1e-4) and clipped.clipped_steps == 1
    assert step(plain, 10.0) == pytest.approx(10.0, rel=1e-4) and plain.clipped_steps == 0
    with pytest.raises(ValueError, match="analyzer_net.clip_factor"):
        recipe.build_module({**TINY["fan"], "clip_factor": 1.0})


@pytest.mark.parametrize("variant", ["bisenet", "fan", "bisenet_gpu", "fan_gpu"])
def test_every_analyzer_net_config_builds_its_module(variant: str) -> None:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train_analyzer", overrides=[f"analyzer_net={variant}"])
    net = dict(cfg.analyzer_net)
    with torch.device("meta"):
        module = recipe.build_module(net)
    assert module.size == net["size"]
    assert ScoreFaces(**cfg.analyzer_scores).worlds == range(10, 30)
    assert set(range(cfg.data.first_world, cfg.data.first_world + cfg.data.worlds)).isdisjoint(range(10, 30))


def test_truth_on_terms_counts_the_true_dimensions_a_suppress_term_blocks() -> None:
    from types import SimpleNamespace

    from experiments.trained_analyzers.tasks import truth_on_terms

    truth = torch.eye(5, dtype=torch.float64)[:, 1:3]  # the true subspace: axes 1 and 2
    generator = SimpleNamespace(true_subspace=lambda factors, space: truth)
    terms = SimpleNamespace(terms=[SimpleNamespace(name="suppress", ratio=1e-4), SimpleNamespace(name="activate", ratio=None)])
    setup = SimpleNamespace(generator=generator, truth=["a", "b"], space="s", terms=terms)
    gram = torch.diag(torch.tensor([1.0, 1e-3, 1e-6, 0.5, 0.0], dtype=torch.float64))
    out = truth_on_terms(setup, {"suppress": gram, "activate": gram})
    assert out["suppress"] == {"share_max": pytest.approx(1e-3), "share_min": pytest.approx(1e-6), "dim": 2, "blocked": 1,
                               "significant": 3}
    assert "blocked" not in out["activate"] and out["activate"]["share_min"] == pytest.approx(1e-6)


def test_the_seven_task_comparison_runs_with_trained_files_and_resumes(trained, tmp_path, monkeypatch) -> None:
    """experiments/trained_analyzers/tasks.py at a tiny size, the tiny trained files loaded as a user loads them."""
    from experiments.trained_analyzers import tasks

    analyzers = (f"analyzer/parser=bisenet analyzer.parser.path={trained['bisenet']} analyzer.parser.size=64 "
                 f"analyzer/landmarker=fan analyzer.landmarker.path={trained['fan']} analyzer.landmarker.size=64 "
                 "analyzer.landmarker.num_modules=1")
    argv = ["--tasks", "hair_photometry", "--worlds", "3-3", "--analyzers", analyzers, "--out", str(tmp_path / "tasks"),
            "--overrides", "generator.resolution=64 samples.indices=[0] space=w"]
    (row,) = tasks.main(argv)
    assert (row["task"], row["world"], row["gt/dim_true"]) == ("hair_photometry", 3, 2)
    assert set(row["term_angle_deg"]) == {"activate", "outside_hair", "landmarks"}
    assert all(0 <= row[k] <= 90 for k in ("angle_oracle_trained_deg", "angle_glues_deg"))
    assert set(row["truth_on_terms"]) == set(tasks.WAYS) == set(row["found_factors"])
    assert row["truth_on_terms"]["oracle"]["outside_hair"]["dim"] == 2
    assert len(row["found_factors"]["oracle"]) == row["oracle/gt/dim_found"] and len(row["activate_top_factors"]["trained"]) == 3
    assert "| hair_photometry | 2 |" in (tmp_path / "tasks.md").read_text()
    monkeypatch.setattr(tasks, "one_world", lambda *a: pytest.fail("ran a task-world that was already written"))
    assert tasks.main(argv) == [row]


def tiny_recipes(trained: dict[str, object]) -> dict[str, str]:
    """{net: the conf/train_analyzer.yaml overrides of its tiny recipe}, pointing at the fixture's cache."""
    common = [f"data.{k}={v}" for k, v in vars(TINY_DATA).items()] + [f"cache_dir={trained['fan'].parent.parent}"]
    return {name: " ".join(common + [f"analyzer_net.{k}={v}" for k, v in TINY[name].items() if k != "name"]) for name in TINY}


def test_the_trained_tier_runs_its_cases_with_the_cached_networks(trained, tmp_path, monkeypatch) -> None:
    """experiments/worlds/tiers.py --trained at a tiny size: the networks are found in the cache by their
    settings (no training), and every case is built with both files loaded."""
    from experiments.worlds import tiers

    monkeypatch.setattr(recipe, "train", lambda *a, **k: pytest.fail("trained again"))
    loaded, real = [], tiers.build_setup

    def build_setup(cfg):
        loaded.append((cfg.analyzer.parser.path, cfg.analyzer.landmarker.path))
        return real(cfg)

    monkeypatch.setattr(tiers, "build_setup", build_setup)
    nets, out = tiny_recipes(trained), tmp_path / "tiers.jsonl"
    tiers.main(["--trained", "--bisenet", nets["bisenet"], "--fan", nets["fan"], "--tasks", "hair_photometry",
                "--methods", "recommended", "--worlds", "3-3", "--curvatures", "0", "--out", str(out),
                "--overrides", "generator.resolution=64 samples.indices=[0,1] samples.eval_num=2"])
    assert loaded == [(str(trained["bisenet"]), str(trained["fan"]))]
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert (row["task"], row["world"], row["scores"]["recommended"]["gt/dim_true"]) == ("hair_photometry", 3, 2)


def test_the_trained_tier_reads_trust_through_the_runs_fan_decoded_locally(trained, tmp_path) -> None:
    """tiers.py --trust local: the trust landmarker is the run's own trained FAN read near each peak, the parser
    the run's (no second pair is trained), and every answer gets its trust/independent_share."""
    from experiments.worlds import tiers

    nets, out = tiny_recipes(trained), tmp_path / "tiers.jsonl"
    tiers.main(["--trained", "--bisenet", nets["bisenet"], "--fan", nets["fan"], "--trust", "local", "--tasks",
                "hair_photometry", "--methods", "recommended,resefa", "--worlds", "3-3", "--curvatures", "0", "--out",
                str(out), "--overrides", "generator.resolution=64 samples.indices=[0,1] samples.eval_num=2"])
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    overrides = shlex.split(row["overrides"])
    assert {f"trust.landmarker.path={trained['fan']}", "trust.landmarker.heatmap_mode=local"} <= set(overrides)
    assert not any(o.split("=")[0].startswith(("trust.parser", "analyzer/parser@trust")) for o in overrides)
    assert 0 <= row["scores"]["resefa"]["trust/independent_share"] <= 1


def test_the_trained_tier_raises_each_ratio_to_its_noise_floor(trained, tmp_path) -> None:
    """tiers.py --floors: each suppress term's floor is measured on the validation world's held-out faces
    against the oracles (the run's other overrides kept), and the cases run with the raised ratios."""
    from experiments.worlds import tiers

    nets, out = tiny_recipes(trained), tmp_path / "tiers.jsonl"
    tiers.main(["--trained", "--bisenet", nets["bisenet"], "--fan", nets["fan"], "--tasks", "hair_photometry",
                "--methods", "recommended", "--worlds", "3-3", "--curvatures", "0", "--floors", "4-4", "--out", str(out),
                "--overrides", "generator.resolution=64 samples.indices=[0] samples.eval_num=2"])
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    overrides = shlex.split(row["overrides"])
    ratios = dict(o.removeprefix("criteria.suppress.").split(".ratio=") for o in overrides if o.startswith("criteria.suppress."))
    dropped = {o.removeprefix("~criteria.suppress.") for o in overrides if o.startswith("~criteria.suppress.")}
    assert set(ratios) | dropped == {"outside_hair", "landmarks"} and all(1e-4 <= float(r) < 1 for r in ratios.values())
    assert "landmarks" in dropped or float(ratios["landmarks"]) > 1e-4  # a tiny FAN's points follow the hair's colour


def test_the_reproduction_trains_scores_and_runs_tasks_and_glue(trained, tmp_path, monkeypatch) -> None:
    """experiments/trained_analyzers/reproduce.py at a tiny size: the cached tiny files are found by their
    settings (no training), scored, and the task and glue tables written."""
    from experiments.trained_analyzers import reproduce

    monkeypatch.setattr(recipe, "train", lambda *a, **k: pytest.fail("trained again"))
    nets = tiny_recipes(trained)
    nets["bisenet"] += " analyzer_scores.last_world=10 analyzer_scores.faces=2 analyzer_scores.resolution=64"
    reproduce.main(["--worlds", "3-3", "--tasks", "hair_photometry", "--out", str(tmp_path), "--grams", str(tmp_path / "grams"),
                    "--overrides", "generator.resolution=64 samples.indices=[0] space=w",
                    "--bisenet", nets["bisenet"], "--fan", nets["fan"]])
    assert {p.name for p in tmp_path.iterdir()} >= {"scores.json", "scores.md", "record_bisenet.json", "record_fan.json",
                                                   "tasks.jsonl", "tasks.md", "glue.jsonl", "glue.md", "grams"}
    summary = json.loads((tmp_path / "scores.json").read_text())["summary"]
    assert "miou" in summary and "nme/all" in summary
    assert json.loads((tmp_path / "record_fan.json").read_text())["net"] == TINY["fan"]
