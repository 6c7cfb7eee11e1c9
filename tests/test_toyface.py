"""toyface: differentiability, analyzers consistent with the drawing, and the ground truth."""
from __future__ import annotations

import pytest
import torch

from ice_exp.common.face_parts import LANDMARK_GROUPS, REGIONS
from ice_exp.common.linalg import principal_angles
from ice_exp.config.task import true_groups
from ice_exp.generators.toyface import ToyFaceGenerator
from ice_exp.generators.toyface.factors import FACTORS, factor_index
from ice_exp.generators.toyface.factors import true_subspace as factor_subspace
from ice_exp.metrics.directional import factor_purity
from ice_exp.world import OracleLandmarker, OracleParser
from ice_exp.world.truth import check_world


@pytest.fixture(scope="module")
def g64() -> ToyFaceGenerator:
    return ToyFaceGenerator(resolution=48, dtype=torch.float64)


def _z(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 32, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("space", ["z", "w", "wp", "s"])
def test_image_and_oracles_match_finite_differences(g64, space):
    """Directional derivatives by autograd equal central differences for image, landmarks and parser."""
    u = g64.encode(_z(1, 3), space)
    v = torch.randn(u.shape, generator=torch.Generator().manual_seed(1), dtype=u.dtype)
    weights = {name: torch.randn(shape, generator=torch.Generator().manual_seed(2), dtype=u.dtype)
               for name, shape in (("image", (1, 3, 48, 48)), ("landmarks", (1, 68, 2)), ("parser", (1, 19, 48, 48)))}

    def outputs(x):
        frame = g64.decode(x, space)
        return {"image": frame.image, "landmarks": OracleLandmarker()(frame), "parser": OracleParser()(frame)}

    u_req = u.clone().requires_grad_(True)
    out = outputs(u_req)
    h = 1e-5
    plus, minus = outputs(u + h * v), outputs(u - h * v)
    for name, w in weights.items():
        (grad,) = torch.autograd.grad((out[name] * w).sum(), u_req, retain_graph=True)
        fd = ((plus[name] - minus[name]) * w).sum() / (2 * h)
        assert torch.allclose((grad * v).sum(), fd, rtol=1e-5, atol=1e-8), name


def test_parser_probabilities_respect_occlusion():
    g = ToyFaceGenerator(resolution=128)
    frame = g.decode(g.encode(_z(4), "s"), "s")
    probs = OracleParser()(frame)
    assert probs.shape == (4, 19, 128, 128)
    assert torch.allclose(probs.sum(1), torch.ones(4, 128, 128), atol=1e-5)
    labels = probs.argmax(1)
    for name in ("skin", "l_eye", "r_eye", "nose", "u_lip", "l_lip", "hair", "neck", "background", "l_brow", "r_brow"):
        assert (labels == REGIONS.index(name)).any(), name
    # the fringe is drawn in front of the face: at the top centre of the face the label is hair, not skin
    top_of_face = frame.scene.landmarks[:, 27, 1] - 0.45  # well above the nose bridge start
    rows = ((top_of_face + 1) * 64 - 0.5).round().long()
    cols = ((frame.scene.landmarks[:, 27, 0] + 1) * 64 - 0.5).round().long()
    assert (labels[torch.arange(4), rows, cols] == REGIONS.index("hair")).all()


EXPECTED_CLASS = {  # the class each landmark group is drawn on (its contour touches that class)
    "jaw": ("skin",), "brows": ("l_brow", "r_brow"), "nose": ("nose",), "eyes": ("l_eye", "r_eye"),
    "outer_lip": ("u_lip", "l_lip"), "inner_lip": ("u_lip", "l_lip", "mouth"),
}


def test_landmarks_lie_on_the_contours_the_parser_labels():
    g = ToyFaceGenerator(resolution=128)
    frame = g.decode(g.encode(_z(6, 5), "s"), "s")
    labels = OracleParser()(frame).argmax(1)
    points = OracleLandmarker()(frame).round().long().clamp(2, 125)
    for group, classes in EXPECTED_CLASS.items():
        ids = torch.tensor([REGIONS.index(c) for c in classes])
        for b in range(6):
            for i in LANDMARK_GROUPS[group]:
                x, y = points[b, i]
                patch = labels[b, y - 2: y + 3, x - 2: x + 3]
                assert torch.isin(patch, ids).any(), (group, i, b)
                if group == "jaw":  # on the outline: skin on one side, something else on the other
                    assert (patch != REGIONS.index("skin")).any(), (i, b)


@pytest.mark.parametrize("space", ["s", "w", "wp"])
def test_true_subspaces_change_only_their_factors(g64, space):
    u = g64.encode(_z(3, 7), space)
    jac = g64.factor_jacobian(u, space)  # [3, 20, D]
    for task, group in true_groups().items():
        q = g64.true_subspace(group, space)
        assert q.shape[1] == len(group)
        idx = factor_index(group)
        others = [i for i in range(len(FACTORS)) if i not in idx]
        moved = jac @ q  # [3, 20, k]
        assert moved[:, others].abs().max() < 1e-8 * moved[:, idx].abs().max(), task
        assert torch.linalg.matrix_rank(moved[0, idx]) == len(group), task


WORLDS = torch.randint(1000, 10**6, (2,), generator=torch.Generator().manual_seed(2026)).tolist()  # drawn, not picked


@pytest.mark.parametrize("world", WORLDS)
def test_true_groups_are_what_the_factors_measurably_do(world):
    """In worlds drawn at random, each task's true group is exactly the set of factors that follow the task's
    rule when moved alone (pixels inside the region, landmarks as the task says), measured on the drawing."""
    assert check_world(world) == {}


@pytest.mark.parametrize("world", WORLDS[:1])
def test_true_groups_hold_in_a_curved_world(world):
    """The curved part changes how factors read the styles, never what a factor draws: the groups stay."""
    assert check_world(world, curvature=0.3) == {}


# --- curved worlds --------------------------------------------------------------------------------------------
CURVED_WORLD = WORLDS[1]


def test_curvature_zero_is_the_linear_world_and_the_linear_weights_do_not_depend_on_it():
    linear, curved = (ToyFaceGenerator(resolution=32, seed=CURVED_WORLD, curvature=c) for c in (0.0, 0.3))
    s = linear.encode(_z(4, 1), "s")
    expected = torch.tanh((s @ linear.readout.T - linear.readout_centre) / linear.readout_scale)
    assert torch.equal(linear.factors(s), expected)
    assert all(torch.equal(v, curved.state_dict()[k]) for k, v in linear.state_dict().items())  # all but the curvature
    assert (curved.factors(s) - expected).abs().max() > 0.05


@pytest.mark.parametrize("space", ["s", "w"])
def test_the_curved_factor_map_matches_finite_differences(space):
    g = ToyFaceGenerator(resolution=32, seed=CURVED_WORLD, curvature=0.3, dtype=torch.float64)
    u = g.encode(_z(2, 3).double(), space)
    v = torch.randn(u.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    h = 1e-6
    numeric = (g.factors(g.to_styles(u + h * v, space)) - g.factors(g.to_styles(u - h * v, space))) / (2 * h)
    analytic = torch.einsum("bfd,bd->bf", g.factor_jacobian(u, space), v)
    assert torch.allclose(numeric, analytic, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("curvature", [0.03, 0.3])
def test_no_subspace_stays_pure_across_16_faces_of_a_curved_world(curvature):
    """No low-dimensional bottleneck: in a curved world no direction moves a task's group and nothing else at
    all of 16 faces (in the linear world exactly the true subspace does), while each face has its local truth."""
    for c in (0.0, curvature):
        g = ToyFaceGenerator(resolution=32, seed=CURVED_WORLD, curvature=c, dtype=torch.float64)
        z = _z(16, 5).double()
        jac = g.factor_jacobian(g.encode(z, "s"), "s")
        for task, group in true_groups().items():
            idx = factor_index(group)
            common = factor_subspace(jac, idx)
            assert common.shape[1] == (len(group) if c == 0 else 0), (c, task)
            local = g.true_subspace(group, "s", z[3:4])
            assert local.shape[1] == len(group) and factor_purity(jac[3], idx, local).min() > 1 - 1e-9, (c, task)
            if c:  # the local truth of one face is not pure at another
                assert factor_purity(jac[9], idx, local).min() < 1 - 1e-6, (c, task)


def test_a_negative_curvature_is_refused():
    with pytest.raises(ValueError, match="generator.curvature: must be a finite number in \\[0, inf\\)"):
        ToyFaceGenerator(resolution=32, curvature=-0.1)


def test_world_check_finds_a_truth_the_drawing_contradicts(monkeypatch):
    """The check is not vacuous: a group by meaning that the drawing does not bear out is reported."""
    monkeypatch.setitem(true_groups(), "hair_photometry", ("hair_colour", "hair_length", "chin_shape"))
    assert check_world(WORLDS[0], resolution=128, samples=2) == {"hair_photometry": ("hair_length", "hair_colour")}


def test_scores_perfect_on_truth_and_worse_on_random_and_pca(g64):
    group = true_groups()["mouth_shape"]
    truth = g64.true_subspace(group, "s")
    jac = g64.factor_jacobian(g64.encode(_z(1, 9), "s"), "s")[0]
    assert principal_angles(truth, truth).max() < 1e-4
    assert factor_purity(jac, factor_index(group), truth).min() > 1 - 1e-9
    random = torch.randn(truth.shape, generator=torch.Generator().manual_seed(0), dtype=truth.dtype)
    assert principal_angles(random, truth).max() > 60
    assert factor_purity(jac, factor_index(group), random).mean() < 0.5
    # PCA of the group's own factor gradients ignores the shared component the other factors use
    s = g64.encode(_z(2000, 11), "s")
    pca = torch.linalg.svd(s - s.mean(0), full_matrices=False)[2][: truth.shape[1]].T
    assert principal_angles(pca, truth).max() > 30


def test_spaces_render_the_same_face(g64):
    z = _z(2, 13)
    images = [g64.decode(g64.encode(z, space), space).image for space in ("z", "w", "wp", "s")]
    for image in images[1:]:
        assert torch.allclose(image, images[0], atol=1e-12)
    s = g64.encode(z, "s")
    assert torch.equal(g64.pack(g64.unpack(s)), s)
    assert g64.s_dim == 192 and g64.space_dim("wp") == 8 * 32


def test_bad_inputs_give_clear_errors(g64):
    with pytest.raises(ValueError, match="resolution"):
        ToyFaceGenerator(resolution=8)
    with pytest.raises(ValueError, match="unknown factors.*allowed values"):
        g64.true_subspace(["nose_size"], "s")
    with pytest.raises(ValueError, match="space.*allowed values: z, w, wp, s"):
        g64.encode(_z(1), "x")
    with pytest.raises(ValueError, match="no toyface scene"):
        from ice_exp.generators.base import Frame

        OracleParser()(Frame(image=torch.zeros(1, 3, 8, 8)))


def test_every_factor_visibly_changes_the_image():
    g = ToyFaceGenerator(resolution=128)
    s = g.s_mean[None]  # the average face: every part is mid-sized
    base = g.decode(s, "s").image
    for name in FACTORS:
        q = g.true_subspace([name], "s")[:, 0].to(s)
        # a step that moves this factor by about 0.5 (of its (-1, 1) range), towards the middle
        value = g.factors(s)[0, FACTORS.index(name)]
        rate = (g.factor_jacobian(s, "s")[0, FACTORS.index(name)] @ q) * (-1 if value > 0 else 1)
        change = float((g.decode(s + 0.5 / rate * q, "s").image - base).abs().amax())
        assert change > 0.1, (name, change)
