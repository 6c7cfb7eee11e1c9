"""Counterfactual explanation (docs/method.md) on CPU: the toyface truth, the search's invariants, the CelebA
classifier's checkpoint contract and its training recipe. Everything runs at small sizes; the toyface
classifier is trained once per session (48 px, about 25 s) into a temporary cache."""
from __future__ import annotations

import math
import os

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from PIL import Image
from torchmetrics.classification import MultilabelAccuracy

from ice_exp.config import CONF_DIR
from ice_exp.config.task import true_groups
from ice_exp.counterfactual.classifiers import (
    CELEBA_ATTRIBUTES,
    CelebAAttrResNet50,
    Classifier,
    ImageTransform,
    celeba_attr_resnet50,
    load_celeba_classifier,
    load_checkpoint,
)
from ice_exp.counterfactual.in_subspaces import explain, log_explanation
from ice_exp.counterfactual.measures import mnac
from ice_exp.counterfactual.search import SearchConfig, counterfactual_search
from ice_exp.criteria.terms import build_terms
from ice_exp.generators.toyface import ToyFaceGenerator
from ice_exp.run.artifacts import save_subspace
from ice_exp.run.build import build_analyzers
from ice_exp.run.explanation import explain_runs
from ice_exp.solvers.base import Solution
from ice_exp.training.celeba import celeba, loaders, train
from ice_exp.world.attribute import AttrRule, flippable

R = 48
CONFIDENT = 0.8  # faces explained in the truth test: the classifier is right with at least this probability
RULE_SUBSPACES = {"mouth_shape", "eye_shape", "eye_photometry", "face_color"}  # groups holding a rule factor
CRITERIA_FILES = {"mouth_shape": "mouth_shape_pixels", "eye_shape": "eye_shape", "eye_photometry": "eye_photometry",
                  "face_color": "face_color", "hair_photometry": "hair_photometry", "lip_color": "lip_color"}


def explain_config(cache_dir, *overrides: str):
    """conf/explain.yaml (classifier=toyface_attr, counterfactual=default) at test size."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("explain", overrides=[
            "logger=none", f"classifier.resolution={R}", "classifier.train.samples=2048", "classifier.train.held_out=512",
            "classifier.train.epochs=10", f"classifier.cache_dir={cache_dir}", "counterfactual.tile=48", *overrides])


def main_config(*overrides: str):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("config", overrides=["logger=none", f"generator.resolution={R}", *overrides])


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def classifier(cache_dir) -> Classifier:
    """The test-size toyface_attr, trained once into the module's cache (the explanations reload it)."""
    from hydra.utils import instantiate

    return instantiate(explain_config(cache_dir).classifier, _convert_="all")


def test_toyface_classifier_learns_the_rule(classifier):
    info = classifier.info
    assert info["held_out_accuracy"] >= 0.88, info
    assert abs(info["positive_share"] - 0.5) < 0.05  # the median threshold balances the classes
    assert classifier.heads == ("attractive",) and set(info["rule"]) == {"smile_curvature", "eye_size", "skin_tone"}


class RecordingRun:
    """Stands in for a wandb Run: records what log_explanation() logs."""

    def __init__(self) -> None:
        self.logged: dict = {}

    def log(self, data: dict) -> None:
        self.logged.update(data)


def flippable_faces(generator: ToyFaceGenerator, classifier: Classifier, rule: AttrRule, count: int):
    """Faces the classifier gets right with confidence (so not on the boundary) and whose rule decision each
    rule factor alone can flip: the faces on which the truth says every rule subspace, and no other, flips it."""
    z = torch.randn(300, generator.z_dim, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        s = generator.encode(z, "s")
        factors = generator.factors(s)
        p = classifier(generator.decode(s, "s").image)[:, 0].softmax(-1)
        agree = (p.argmax(1) == rule.label(factors)) & (p.amax(1) >= CONFIDENT)
    keep = torch.nonzero(agree & flippable(factors, rule)).flatten()[:count]
    assert len(keep) == count
    return z[keep]


def test_rule_subspaces_flip_the_classifier_and_rank_first(classifier, cache_dir, tmp_path):
    """Truth on toyface: within the same norm bound the subspaces whose true groups hold a rule factor flip
    the decision (≥ 80% on average, each ≥ 60%: the small classifier misses some edits the rule would
    follow), the others barely (each ≤ 20%), and the table ranks them first."""
    generator = ToyFaceGenerator(resolution=R)
    rule = AttrRule(classifier.info["rule"], classifier.info["threshold"])
    z = flippable_faces(generator, classifier, rule, 16)
    cfg = explain_config(cache_dir, "counterfactual.iterations=12", "counterfactual.target_class=flip",
                         "counterfactual.norm_bound=6", "counterfactual.stop_probability=0.9")
    subspaces = {task: (Solution(torch.ones(len(group)), generator.true_subspace(group, "s")), {"space": "s"})
                 for task, group in true_groups().items()}
    analyzers = build_analyzers(main_config().analyzer)
    terms = {task: build_terms(OmegaConf.to_container(main_config(f"criteria={name}").criteria, resolve=True), analyzers)
             for task, name in CRITERIA_FILES.items()}
    logger = RecordingRun()
    tasks = {task: OmegaConf.to_container(main_config(f"criteria={name}").criteria.task) for task, name in CRITERIA_FILES.items()}
    rows = explain(cfg.counterfactual, classifier, subspaces, generator, analyzers, terms, tasks, tmp_path, z=z)
    log_explanation(logger, rows, tmp_path)
    flip = {r["subspace"]: r["flip_rate"] for r in rows}
    print("\n" + (tmp_path / "table.md").read_text())
    rule_rates = [flip[t] for t in RULE_SUBSPACES]
    assert sum(rule_rates) / len(rule_rates) >= 0.8 and min(rule_rates) >= 0.6, flip
    assert all(flip[t] <= 0.2 for t in set(flip) - RULE_SUBSPACES), flip
    assert {r["subspace"] for r in rows[: len(RULE_SUBSPACES)]} == RULE_SUBSPACES
    by_name = {r["subspace"]: r for r in rows}
    assert by_name["lip_color"]["norm_du"] <= 6 + 1e-4  # the bound holds
    assert not math.isnan(by_name["mouth_shape"]["locality"]) and "change/outside_mouth" in by_name["mouth_shape"]
    for name in ("table.md", "table.csv", "samples.csv", "grid.png", "differences.png", "classifier.json"):
        assert (tmp_path / name).is_file()
    assert Image.open(tmp_path / "grid.png").size == (8 * 50, 22 + 4 * 50)  # original + 7 columns, 4 rows
    # the scalars are logged by the caller, under its names
    assert set(logger.logged) == {"counterfactual/table", "counterfactual/per_sample", "counterfactual/grid",
                                  "counterfactual/differences"}
    assert len(logger.logged["counterfactual/table"].data) == 7 and "flip_rate" in logger.logged["counterfactual/table"].columns
    assert len(logger.logged["counterfactual/per_sample"].data) == 7 * 16  # one row per subspace and sample


def pixel_classifier(resolution: int) -> Classifier:
    """A seeded linear two-class model on the pixels (float64): cheap and sensitive to every edit."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * resolution**2, 2))
    with torch.no_grad():
        net[1].weight.mul_(10)
    return Classifier(net).double()


def random_basis(dim: int, k: int) -> torch.Tensor:
    """A seeded orthonormal basis [dim, k]."""
    return torch.linalg.qr(torch.randn(dim, k, dtype=torch.float64, generator=torch.Generator().manual_seed(2)))[0]


@pytest.mark.parametrize("space", ["s", "w"])
def test_search_never_leaves_the_subspace(space):
    """The edit is B λ: its component orthogonal to span(B) vanishes (float64, any space), with and without
    a norm bound, and the bound holds."""
    generator = ToyFaceGenerator(resolution=32, dtype=torch.float64)
    classifier = pixel_classifier(32)
    u = generator.encode(torch.randn(6, generator.z_dim, generator=torch.Generator().manual_seed(0)), space)
    basis = random_basis(generator.space_dim(space), 3)
    for bound in (None, 0.5):
        result = counterfactual_search(generator, classifier, u, space, basis,
                                       SearchConfig(iterations=8, target_class="flip", norm_bound=bound))
        outside = result.delta - (result.delta @ basis) @ basis.T
        assert outside.norm(dim=1).max() <= 1e-6 and result.delta.norm() > 0
        if bound is not None:
            assert result.delta.norm(dim=1).max() <= bound + 1e-9
        torch.testing.assert_close(result.frame_after.image, generator.decode(u + result.delta, space).image)
        assert torch.isnan(result.iterations_to_flip[~result.eligible]).all()
        assert not torch.isnan(result.iterations_to_flip[result.flipped]).any()


def test_stop_probability_freezes_samples():
    """A sample frozen at p(target) >= stop keeps its λ however long the search goes on."""
    generator = ToyFaceGenerator(resolution=32, dtype=torch.float64)
    classifier = pixel_classifier(32)
    u = generator.encode(torch.randn(6, generator.z_dim, generator=torch.Generator().manual_seed(1)), "s")
    basis = random_basis(generator.s_dim, 4)
    short, long = (counterfactual_search(generator, classifier, u, "s", basis,
                                         SearchConfig(iterations=n, target_class="flip", stop_probability=0.6))
                   for n in (4, 10))
    frozen = short.p_after >= 0.6
    assert frozen.any() and (~frozen).any()
    torch.testing.assert_close(long.lam[frozen], short.lam[frozen])
    assert ((long.lam - short.lam)[~frozen].norm(dim=1) > 1e-3).all()  # the others went on


def test_mnac_counts_other_heads():
    before = torch.tensor([[[2.0, 0.0], [0.0, 1.0], [1.0, 0.0]]])  # predictions 0, 1, 0
    after = torch.tensor([[[0.0, 2.0], [1.0, 0.0], [1.0, 0.0]]])  # 1, 0, 0: head 0 (explained) and head 1 changed
    assert mnac(before, after, head=0).tolist() == [1.0]


def write_published(model: torch.nn.Module, path) -> None:
    torch.save({"epoch": 1, "arch": "resnet50", "best_prec1": 90.0,
                "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, path)


@pytest.fixture(scope="module")
def celeba_model() -> CelebAAttrResNet50:
    return CelebAAttrResNet50().eval()


def test_celeba_checkpoint_in_published_layout_loads(celeba_model, tmp_path):
    keys = set(celeba_model.state_dict())
    assert {"conv1.weight", "layer4.2.bn3.running_var", "stem.fc.weight", "stem.bn.running_mean",
            "classifier00.0.fc.weight", "classifier39.1.bias"} <= keys and "fc.weight" not in keys
    write_published(celeba_model, tmp_path / "model_best.pth.tar")
    clf = celeba_attr_resnet50(tmp_path, attribute="Smiling")  # the folder holding model_best.pth.tar
    assert clf.heads == CELEBA_ATTRIBUTES and clf.heads[2] == "Attractive" and clf.target_index == 31
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        logits = clf(image)
        x = ImageTransform(218, (218, 178), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))(image)
        assert x.shape == (1, 3, 218, 178)
        torch.testing.assert_close(logits, celeba_model(x))
    assert logits.shape == (1, 40, 2) and not any(p.requires_grad for p in clf.parameters())
    with pytest.raises(ValueError, match="unknown head 'Handsome'"):
        Classifier(celeba_model, heads=CELEBA_ATTRIBUTES, target="Handsome")


def test_bad_celeba_checkpoints_fail_clearly(celeba_model, tmp_path):
    with pytest.raises(FileNotFoundError, match="model_best.pth.tar.*never published"):
        load_celeba_classifier(tmp_path)
    (tmp_path / "broken.pth.tar").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="broken.pth.tar: not a torch file"):
        load_celeba_classifier(tmp_path / "broken.pth.tar")
    state = {k: v for k, v in celeba_model.state_dict().items() if not k.startswith("classifier39")}
    state["classifier40.1.bias"] = torch.zeros(2)
    torch.save({"state_dict": state}, tmp_path / "keys.pth.tar")
    with pytest.raises(ValueError, match=r"missing keys \['classifier39.*unexpected keys \['classifier40.1.bias'\]"):
        load_checkpoint(CelebAAttrResNet50(), tmp_path / "keys.pth.tar")
    torch.save([1, 2], tmp_path / "list.pth.tar")
    with pytest.raises(ValueError, match="holds no state dict"):
        load_celeba_classifier(tmp_path / "list.pth.tar")


def tiny_celeba(root) -> None:
    """Six 218 x 178 images in torchvision's CelebA layout (<root>/celeba/): two per split; every list file."""
    folder = root / "celeba"
    (folder / "img_align_celeba").mkdir(parents=True)
    gen = torch.Generator().manual_seed(0)
    names = [f"{i + 1:06d}.png" for i in range(6)]
    for name in names:
        pixels = (torch.rand(218, 178, 3, generator=gen) * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(folder / "img_align_celeba" / name)
    attrs = [" ".join(f"{int(a):2d}" for a in torch.randint(0, 2, (40,), generator=gen) * 2 - 1) for _ in names]
    counted = lambda header, rows: "\n".join([str(len(names)), header, *rows]) + "\n"  # noqa: E731
    files = {"list_attr_celeba.txt": counted(" ".join(CELEBA_ATTRIBUTES) + " ", [f"{n}  {a}" for n, a in zip(names, attrs)]),
             "list_eval_partition.txt": "".join(f"{n} {i // 2}\n" for i, n in enumerate(names)),
             "identity_CelebA.txt": "".join(f"{n} {i}\n" for i, n in enumerate(names)),
             "list_bbox_celeba.txt": counted("image_id x_1 y_1 width height", [f"{n} 0 0 178 218" for n in names]),
             "list_landmarks_align_celeba.txt": counted(" ".join(f"{p}_{c}" for p in ("lefteye", "righteye", "nose", "leftmouth",
                                                                                      "rightmouth") for c in "xy"),
                                                        [f"{n} " + " ".join(["90"] * 10) for n in names])}
    for name, text in files.items():
        (folder / name).write_text(text)


@pytest.fixture
def unchecked_md5(monkeypatch):
    """The tiny folder's list files cannot have CelebA's published MD5s: torchvision checks only that they exist."""
    monkeypatch.setattr("torchvision.datasets.celeba.check_integrity", lambda path, md5=None: os.path.isfile(path))


def test_celeba_recipe_trains_one_step_and_writes_a_loadable_checkpoint(tmp_path, unchecked_md5):
    """ModelCheckpoint's best.ckpt is exported in the published layout: the same weights, with their
    validation accuracy as best_prec1."""
    tiny_celeba(tmp_path)
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train_celeba", overrides=[f"data_dir={tmp_path}", f"out_dir={tmp_path / 'out'}", "pretrained=false",
                                                 "epochs=1", "batch_size=2", "num_workers=0", "accelerator=cpu",
                                                 "limit_train_batches=1", "progress_bar=false"])
    path = train(cfg)
    assert path == tmp_path / "out" / "model_best.pth.tar" and (tmp_path / "out" / "test_accuracy.json").is_file()
    raw, best = torch.load(path, weights_only=True), torch.load(tmp_path / "out" / "best.ckpt", weights_only=True)
    assert raw["state_dict"].keys() == {f"module.{k}" for k in CelebAAttrResNet50().state_dict()}
    assert raw["epoch"] == best["epoch"] + 1 == 1
    model = load_celeba_classifier(path).eval()
    assert all(torch.equal(v, best["state_dict"][f"model.{k}"]) for k, v in model.state_dict().items())
    accuracy = MultilabelAccuracy(num_labels=len(CELEBA_ATTRIBUTES))
    with torch.no_grad():
        for x, y in loaders(cfg)["val"]:
            accuracy.update(model(x).softmax(-1)[..., 1], y)
    assert raw["best_prec1"] == pytest.approx(100 * float(accuracy.compute()))


def test_celeba_data_names_a_missing_or_altered_file(tmp_path):
    tiny_celeba(tmp_path)
    with pytest.raises(ValueError, match=r"list_attr_celeba.txt, identity_CelebA.txt, .* differ from CelebA's published"):
        celeba(tmp_path, "train", None)
    (tmp_path / "celeba" / "list_bbox_celeba.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"no list_bbox_celeba.txt in .*celeba \(torchvision's CelebA layout"):
        celeba(tmp_path, "train", None)


def test_explain_cli_reads_discovery_run_folders(classifier, cache_dir, tmp_path):
    """ice-explain: a run folder (subspace.safetensors + config_resolved.yaml) is explained end to end."""
    generator = ToyFaceGenerator(resolution=R)
    for task in ("mouth_shape", "lip_color"):
        run = tmp_path / task
        run.mkdir()
        OmegaConf.save(main_config(f"criteria={CRITERIA_FILES[task]}"), run / "config_resolved.yaml", resolve=True)
        group = true_groups()[task]
        save_subspace(run / "subspace.safetensors", Solution(torch.ones(len(group)), generator.true_subspace(group, "s")),
                      {"space": "s", "criteria": task})
    cfg = explain_config(cache_dir, f"run_dirs=[{tmp_path / 'mouth_shape'},{tmp_path / 'lip_color'}]",
                         "counterfactual.iterations=2", "counterfactual.num_samples=3", "counterfactual.batch_size=2")
    rows = explain_runs(cfg, tmp_path / "out")
    assert {r["subspace"] for r in rows} == {"mouth_shape", "lip_color"} and all(r["samples"] == 3 for r in rows)
    assert "change/other_landmarks" in (tmp_path / "out" / "table.csv").read_text()
    samples = (tmp_path / "out" / "samples.csv").read_text().splitlines()
    assert len(samples) == 1 + 2 * 3 and Image.open(tmp_path / "out" / "grid.png").size[1] == 22 + 3 * 50  # 2 batches
