"""Differentiable cartoon-face renderer: factors -> geometry -> soft signed-distance layers -> image.

Coordinates are in [-1, 1] with y pointing down; pixel centres of an R x R image sit at (2j + 1) / R - 1.
Every shape is a (approximate) signed distance d, turned into anti-aliased coverage sigmoid(-d / tau) with
tau about a third of a pixel, and the layers are alpha-composited back to front. The oracle parser reads
the same layers (``Scene.class_probabilities``) and the oracle landmarks are points of the same contours,
so analyzers and image agree by construction.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ice_exp.common.face_parts import REGIONS
from ice_exp.generators.toyface.factors import FACTORS

EPS = 1e-6
C = {name: REGIONS.index(name) for name in REGIONS}


@dataclass
class Scene:
    """What the oracle analyzers read: landmark positions and the coverage of every drawn layer."""

    landmarks: Tensor  # [B, 68, 2] in [-1, 1] coordinates
    layers: list[tuple[int, Tensor]]  # (parser class, coverage [B, 1, R, R]) from back to front
    resolution: int

    def class_probabilities(self) -> Tensor:
        """[B, 19, R, R]: how much of each pixel each class shows (occlusion respected; sums to 1)."""
        cov = torch.stack([c for _, c in self.layers], 1)  # [B, L, 1, R, R]
        # clear_from[:, k]: the share of a pixel that layers k and above leave uncovered
        clear_from = torch.flip(torch.cumprod(torch.flip(1 - cov, [1]), 1), [1])
        visible = cov * torch.cat([clear_from[:, 1:], torch.ones_like(cov[:, :1])], 1)
        probs = [torch.zeros_like(cov[:, 0]) for _ in REGIONS]
        for k, (cls, _) in enumerate(self.layers):
            probs[cls] = probs[cls] + visible[:, k]
        probs[0] = probs[0] + clear_from[:, 0]  # the background shows through everything
        return torch.cat(probs, 1)


def _f(factors: Tensor, name: str) -> Tensor:
    return factors[:, FACTORS.index(name), None, None]  # [B, 1, 1] for broadcasting over pixels


def geometry(factors: Tensor) -> dict[str, Tensor]:
    """Physical shape parameters [B, 1, 1] from factors in (-1, 1). Internal features do not depend on the
    face outline, so jaw factors move only the jaw (the truth of face_boundary)."""
    f = lambda n: _f(factors, n)  # noqa: E731
    yaw = 0.07 * f("head_yaw")
    g = {"yaw": yaw, "cx": yaw * 0.4, "cy": torch.full_like(yaw, -0.08)}
    g["a"] = 0.42 + 0.06 * f("face_width")  # face half-width
    g["b_top"] = torch.full_like(yaw, 0.56)
    g["b_jaw"] = 0.58 + 0.07 * f("jaw_length")
    g["chin_p"] = 2.0 + 0.5 * f("chin_shape")  # superellipse exponent of the jaw: <2 pointed, >2 square
    g["eye_y"] = torch.full_like(yaw, -0.08)
    g["eye_dx"] = 0.18 + 0.04 * f("eye_spacing")
    g["eye_w"] = 0.08 + 0.022 * f("eye_size")
    g["eye_h"] = g["eye_w"] * (0.5 + 0.25 * f("eye_openness"))
    g["eye_x_shift"] = yaw * 0.8
    g["brow_dx"] = torch.full_like(yaw, 0.18)  # brows do not follow the eye spacing
    g["brow_y"] = g["eye_y"] - (0.14 + 0.035 * f("brow_height"))
    g["nose_x"], g["nose_tip_x"] = yaw * 1.0, yaw * 1.25
    g["nose_tip_y"] = g["eye_y"] + 0.19 + 0.045 * f("nose_length")
    g["nose_w"] = 0.062 + 0.035 * f("nose_width")
    g["mouth_x"], g["mouth_y"] = yaw * 0.9, torch.full_like(yaw, 0.31)
    g["mouth_w"] = 0.14 + 0.03 * f("mouth_width")
    g["mouth_o"] = 0.03 + 0.025 * f("mouth_openness")
    g["smile"] = 0.05 * f("smile_curvature")
    g["hair_bottom"] = g["cy"] + 0.32 + 0.38 * f("hair_length")
    return g


def _ellipse(x: Tensor, y: Tensor, cx: Tensor | float, cy: Tensor | float, a: Tensor | float, b: Tensor | float) -> Tensor:
    """Approximate signed distance to an axis-aligned ellipse (exact on the axes)."""
    rho = torch.sqrt(((x - cx) / a) ** 2 + ((y - cy) / b) ** 2 + EPS)
    return (rho - 1) * torch.minimum(torch.as_tensor(a), torch.as_tensor(b))


def _band(x: Tensor, y: Tensor, top: Tensor, bottom: Tensor, cx: Tensor, half_w: Tensor) -> Tensor:
    """Region between two curves top(x) < y < bottom(x) over |x - cx| < half_w (vertical distances)."""
    return torch.maximum(torch.maximum(top - y, y - bottom), (x - cx).abs() - half_w)


def _face_radius(cos: Tensor, sin: Tensor, g: dict[str, Tensor]) -> Tensor:
    """Face outline in polar form: an ellipse above the eye line, a superellipse jaw below it."""
    p = g["chin_p"]
    lower = (((cos / g["a"]) ** 2 + EPS) ** (p / 2) + ((sin / g["b_jaw"]) ** 2 + EPS) ** (p / 2)) ** (-1 / p)
    upper = ((cos / g["a"]) ** 2 + (sin / g["b_top"]) ** 2 + EPS) ** -0.5
    below = torch.sigmoid(sin * 40)  # smooth switch across the eye line (sin = 0, where both equal a)
    return below * lower + (1 - below) * upper


def _lip_curves(x: Tensor, g: dict[str, Tensor]) -> dict[str, Tensor]:
    """Mouth centre line (corners raised by the smile) and the four lip edges as functions of x."""
    t = (x - g["mouth_x"]) / g["mouth_w"]
    centre = g["mouth_y"] - g["smile"] * t**2
    profile = torch.sqrt(torch.clamp(1 - t**2, min=0) + 1e-4)
    half_open = 0.5 * g["mouth_o"] * profile
    return {
        "upper_out": centre - half_open - 0.03 * profile, "upper_in": centre - half_open,
        "lower_in": centre + half_open, "lower_out": centre + half_open + 0.04 * profile,
    }


def landmarks(g: dict[str, Tensor]) -> Tensor:
    """The 68 iBUG points [B, 68, 2], each on the contour the renderer draws for its part."""
    batch = g["yaw"].shape[0]
    dev, dt = g["yaw"].device, g["yaw"].dtype
    sq = lambda v: v.reshape(batch, -1)  # noqa: E731  [B,1,1] -> [B,1]
    pts: list[Tensor] = []
    # jaw 0-16: image left -> chin -> image right along the lower outline
    theta = torch.pi - torch.pi * torch.arange(17, device=dev, dtype=dt) / 16
    cos, sin = torch.cos(theta)[None, :, None], torch.sin(theta)[None, :, None]
    r = _face_radius(cos, sin, g).reshape(batch, 17)
    pts.append(torch.stack([sq(g["cx"]) + r * cos.reshape(1, 17), sq(g["cy"]) + r * sin.reshape(1, 17)], -1))
    # brows 17-21 (image-left brow), 22-26 (image-right brow), left to right along the brow centre line
    s = torch.tensor([-0.9, -0.45, 0.0, 0.45, 0.9], device=dev, dtype=dt)
    for side in (-1, 1):
        bx = sq(side * g["brow_dx"] + g["eye_x_shift"])
        xs = bx + BROW_HALF_LEN * s
        pts.append(torch.stack([xs, sq(g["brow_y"]) - BROW_ARCH * (1 - s**2)], -1))
    # nose 27-30 bridge (top -> tip), 31-35 lower contour of the nose base (left -> right)
    u = torch.linspace(0, 1, 4, device=dev, dtype=dt)
    bridge_top_y = g["eye_y"] + 0.02
    pts.append(torch.stack([sq(g["nose_x"]) + u * sq(g["nose_tip_x"] - g["nose_x"]),
                            sq(bridge_top_y) + u * sq(g["nose_tip_y"] - bridge_top_y)], -1))
    ang = torch.deg2rad(torch.tensor([160.0, 125.0, 90.0, 55.0, 20.0], device=dev, dtype=dt))
    pts.append(torch.stack([sq(g["nose_tip_x"]) + sq(g["nose_w"]) * torch.cos(ang),
                            sq(g["nose_tip_y"]) + 0.5 * sq(g["nose_w"]) * torch.sin(ang)], -1))
    # eyes 36-41 (image left), 42-47 (image right): left corner, upper lid x2, right corner, lower lid x2
    ang = torch.deg2rad(torch.tensor([180.0, 240.0, 300.0, 0.0, 60.0, 120.0], device=dev, dtype=dt))
    for side in (-1, 1):
        ex = sq(side * g["eye_dx"] + g["eye_x_shift"])
        pts.append(torch.stack([ex + sq(g["eye_w"]) * torch.cos(ang), sq(g["eye_y"]) + sq(g["eye_h"]) * torch.sin(ang)], -1))
    # lips: outer 48-59 and inner 60-67 in iBUG order (corners, then upper edge, corner, lower edge)
    t_outer = torch.tensor([-1, -2 / 3, -1 / 3, 0, 1 / 3, 2 / 3, 1, 2 / 3, 1 / 3, 0, -1 / 3, -2 / 3], device=dev, dtype=dt)
    t_inner = torch.tensor([-1, -0.5, 0, 0.5, 1, 0.5, 0, -0.5], device=dev, dtype=dt)
    for ts, (up, low) in ((t_outer, ("upper_out", "lower_out")), (t_inner, ("upper_in", "lower_in"))):
        x = sq(g["mouth_x"]) + ts * sq(g["mouth_w"])
        curves = _lip_curves(x, {k: v.reshape(batch, 1) for k, v in g.items()})
        n = len(ts)
        upper_half = torch.zeros(n, dtype=torch.bool, device=dev)
        upper_half[1: n // 2] = True
        y = torch.where(upper_half, curves[up], curves[low])
        pts.append(torch.stack([x, y], -1))
    return torch.cat(pts, 1)


BROW_HALF_LEN, BROW_ARCH, BROW_THICK = 0.09, 0.025, 0.018


def _lerp3(c0: tuple, c1: tuple, c2: tuple, f: Tensor) -> Tensor:
    """Quadratic Bezier through three RGB colours for f in (-1, 1): [B, 3, 1, 1]."""
    t = ((f + 1) / 2).reshape(-1, 1, 1, 1)
    p = [torch.tensor(c, dtype=f.dtype, device=f.device).reshape(1, 3, 1, 1) for c in (c0, c1, c2)]
    return (1 - t) ** 2 * p[0] + 2 * t * (1 - t) * p[1] + t**2 * p[2]


def colours(factors: Tensor) -> dict[str, Tensor]:
    f = lambda n: factors[:, FACTORS.index(n)]  # noqa: E731
    return {
        "skin": _lerp3((0.42, 0.27, 0.19), (0.76, 0.56, 0.43), (0.98, 0.83, 0.72), f("skin_tone")),
        "hair": _lerp3((0.07, 0.05, 0.05), (0.50, 0.30, 0.14), (0.95, 0.82, 0.48), f("hair_colour")),
        "lip": _lerp3((0.90, 0.58, 0.58), (0.80, 0.30, 0.33), (0.62, 0.05, 0.14), f("lip_colour")),
        "iris": _lerp3((0.20, 0.45, 0.85), (0.30, 0.58, 0.30), (0.42, 0.24, 0.08), f("iris_colour")),
        "background": _lerp3((0.40, 0.60, 0.90), (0.85, 0.85, 0.80), (0.90, 0.55, 0.45), f("background_colour")),
    }


def _stretch(d: Tensor, inner: Tensor | float, outer: Tensor, nominal: float) -> Tensor:
    """Face-frame coordinate of an offset d from the face centre, in units of ``nominal``: fixed within
    |d| < inner (where the features are), stretched beyond it so that the outline at ``outer`` maps to where
    it sits on the nominal face. Skin then moves with the outline as a landmark warp moves it."""
    ramp = torch.sigmoid((d.abs() - inner) * 60)
    far = inner + (d.abs() - inner) * (nominal - inner) / (outer - inner)
    return torch.sign(d) * ((1 - ramp) * d.abs() + ramp * far) / nominal


def _waves(u: Tensor, v: Tensor, noise: Tensor) -> Tensor:
    """Unit-variance texture: sum of sinusoids with fixed frequencies and phases ``noise`` [K, 3]."""
    phase = u[..., None] * noise[:, 0] + v[..., None] * noise[:, 1] + noise[:, 2]
    return torch.sin(phase).sum(-1) * (2 / noise.shape[0]) ** 0.5


def render(factors: Tensor, resolution: int, noise: Tensor) -> tuple[Tensor, Scene]:
    """Image in [-1, 1] [B, 3, R, R] and its Scene. ``noise`` [K, 3] holds the fixed texture waves
    (frequencies and phases), the analogue of StyleGAN's constant noise."""
    batch, dev, dt = factors.shape[0], factors.device, factors.dtype
    g = geometry(factors)
    col = colours(factors)
    lighting = factors[:, FACTORS.index("lighting")].reshape(-1, 1, 1, 1)
    px = (torch.arange(resolution, device=dev, dtype=dt) * 2 + 1) / resolution - 1
    y, x = torch.meshgrid(px, px, indexing="ij")
    x, y = x.expand(batch, -1, -1), y.expand(batch, -1, -1)
    tau = 0.7 / resolution
    cover = lambda d: torch.sigmoid(-d / tau).unsqueeze(1)  # noqa: E731  [B, 1, R, R]
    const = lambda *rgb: torch.tensor(rgb, device=dev, dtype=dt).reshape(1, 3, 1, 1)  # noqa: E731

    # texture attached to the face frame (it moves and stretches with the face): a fixed sum of sinusoids,
    # smooth and supported by forward-mode AD (grid_sample is not)
    # Two frames carry texture and shading: the face frame (fu, fv) stretches with the face outline, so
    # face skin moves with the landmarks; the body frame (bu, bv) carries hair, neck, ears and clothes,
    # which do not follow the face shape.
    fu = _stretch(x - g["cx"], 0.3, g["a"], 0.42)  # the cheeks stretch with the face width
    fv = _stretch(y - g["cy"], g["mouth_y"] - g["cy"], g["b_jaw"], 0.58)  # the chin with the jaw length
    bu, bv = (x - g["cx"]) / 0.42, (y - g["cy"]) / 0.56
    light = 0.2 * lighting  # side light: touches every pixel
    face_light, body_light = light * fu.unsqueeze(1), light * bu.unsqueeze(1)
    tex = _waves(fu, fv, noise).unsqueeze(1)
    skin = col["skin"] + face_light + 0.025 * tex - 0.03 * (fu**2 + fv**2).unsqueeze(1)
    body = col["skin"] + body_light + 0.025 * _waves(bu, bv, noise).unsqueeze(1) - 0.03
    hair = col["hair"] * (1 + 0.25 * _waves(bu * 4, bv * 0.4, noise).unsqueeze(1)) + body_light

    layers: list[tuple[int, Tensor, Tensor]] = []  # (class, coverage, colour)
    # hair behind the head: rounded top and straight sides down to the hair length
    hx, hw = g["cx"] - 0.2 * g["yaw"], 0.52  # the hair does not follow the face width
    hair_top = _ellipse(x, y, hx, g["cy"] - 0.06, hw, g["b_top"] + 0.12)
    hair_sides = torch.maximum((x - hx).abs() - hw, torch.maximum(g["cy"] - 0.06 - y, y - g["hair_bottom"]))
    layers.append((C["hair"], cover(torch.minimum(hair_top, hair_sides)), hair))
    layers.append((C["cloth"], cover(_ellipse(x, y, 0.0, 1.45, 0.95, 0.6)),
                   const(0.25, 0.30, 0.45) + body_light))
    neck = torch.maximum((x - 0.5 * g["cx"]).abs() - 0.2, g["cy"] + 0.2 - y)
    layers.append((C["neck"], cover(neck), body - 0.08))
    for side, cls in ((-1, C["r_ear"]), (1, C["l_ear"])):
        ear_x = g["cx"] + side * 0.43 - 0.3 * g["yaw"]  # ears sit behind the cheeks, at a fixed width
        layers.append((cls, cover(_ellipse(x, y, ear_x, g["eye_y"] + 0.04, 0.07, 0.11)), body - 0.04))
    dx, dy = x - g["cx"], y - g["cy"]
    rho = torch.sqrt(dx**2 + dy**2 + EPS)
    layers.append((C["skin"], cover(rho - _face_radius(dx / rho, dy / rho, g)), skin))
    # nose: bridge capsule and base ellipse, slightly darker; two nostrils
    t = torch.clamp((y - g["eye_y"]) / (g["nose_tip_y"] - g["eye_y"]), 0, 1)
    bridge_x = g["nose_x"] + t * (g["nose_tip_x"] - g["nose_x"])
    bridge = torch.maximum((x - bridge_x).abs() - 0.3 * g["nose_w"], torch.maximum(g["eye_y"] + 0.02 - y, y - g["nose_tip_y"]))
    base = _ellipse(x, y, g["nose_tip_x"], g["nose_tip_y"], g["nose_w"], 0.5 * g["nose_w"])
    nose_shade = skin - 0.12 - 0.05 * lighting * torch.tanh((x - bridge_x) * 40).unsqueeze(1)
    layers.append((C["nose"], cover(torch.minimum(bridge, base)), nose_shade))
    for side in (-1, 1):
        nostril = _ellipse(x, y, g["nose_tip_x"] + side * 0.5 * g["nose_w"], g["nose_tip_y"] + 0.15 * g["nose_w"],
                           0.3 * g["nose_w"], 0.18 * g["nose_w"])
        layers.append((C["nose"], cover(nostril), skin - 0.4))  # additive, as all skin shading: a tone change shifts the whole region
    # eyes: sclera, iris and pupil clipped to the eye, then the lid line
    for side, cls in ((-1, C["r_eye"]), (1, C["l_eye"])):
        ex = side * g["eye_dx"] + g["eye_x_shift"]
        eye = _ellipse(x, y, ex, g["eye_y"], g["eye_w"], g["eye_h"])
        inside = cover(eye)
        iris_r = 0.5 * g["eye_w"]
        layers.append((cls, inside, const(0.96, 0.96, 0.94) + 0.3 * face_light))
        layers.append((cls, inside * cover(_ellipse(x, y, ex, g["eye_y"], iris_r, iris_r)), col["iris"] * (1 + 0.3 * tex)))
        layers.append((cls, inside * cover(_ellipse(x, y, ex, g["eye_y"], 0.45 * iris_r, 0.45 * iris_r)), const(0.03, 0.03, 0.03)))
        upper_lid = torch.sigmoid((g["eye_y"] - y) / 0.01)  # the upper lid line is drawn thicker
        lid = torch.maximum(eye.abs() - 0.004 - 0.006 * upper_lid, -eye - 0.012)
        layers.append((cls, cover(lid), const(0.15, 0.09, 0.08)))
        # brow above the eye (its x does not follow the eye spacing; see geometry())
        bx = side * g["brow_dx"] + g["eye_x_shift"]
        s = (x - bx) / BROW_HALF_LEN
        centre = g["brow_y"] - BROW_ARCH * (1 - s**2)
        brow = torch.maximum((y - centre).abs() - BROW_THICK * (1 - 0.4 * s**2), (x - bx).abs() - BROW_HALF_LEN)
        layers.append((C["r_brow"] if side < 0 else C["l_brow"], cover(brow), const(0.22, 0.15, 0.10)))
    # lips and the mouth interior with teeth
    lips = _lip_curves(x, g)
    mx, mw = g["mouth_x"], g["mouth_w"]
    layers.append((C["u_lip"], cover(_band(x, y, lips["upper_out"], lips["upper_in"], mx, mw)), col["lip"] + face_light))
    layers.append((C["l_lip"], cover(_band(x, y, lips["lower_in"], lips["lower_out"], mx, mw)), col["lip"] * 1.08 + face_light))
    interior = _band(x, y, lips["upper_in"], lips["lower_in"], mx, mw)
    layers.append((C["mouth"], cover(interior), const(0.30, 0.06, 0.08)))
    teeth = torch.maximum(interior, y - lips["upper_in"] - 0.45 * (lips["lower_in"] - lips["upper_in"]))
    layers.append((C["mouth"], cover(teeth), const(0.95, 0.93, 0.88)))
    # fringe: the hair in front of the forehead, with a wavy lower edge
    fringe_edge = g["cy"] - g["b_top"] + 0.2 + 0.025 * torch.sin(18 * (x - g["cx"]))
    layers.append((C["hair"], cover(torch.maximum(hair_top, y - fringe_edge)), hair))

    background = col["background"] + 0.08 * lighting * x.unsqueeze(1) - 0.1 * (y.unsqueeze(1) + 1) * 0.5
    image = background
    for _, cov, colour in layers:
        image = image * (1 - cov) + colour * cov
    scene = Scene(landmarks=landmarks(g), layers=[(cls, cov) for cls, cov, _ in layers], resolution=resolution)
    return image * 2 - 1, scene
