"""Names shared by every parser and landmark model: CelebAMask-HQ regions and iBUG-68 landmark groups.

Configs name regions and landmark groups by these names; each parser maps the names to its own labels,
so ``regions: [hair]`` means the same on every parser.
"""
from __future__ import annotations

# CelebAMask-HQ / BiSeNet class order (docs/method.md §2).
REGIONS: tuple[str, ...] = (
    "background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear", "ear_r",
    "nose", "mouth", "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat",
)

# Convenience names that expand to several regions.
REGION_GROUPS: dict[str, tuple[str, ...]] = {
    "brows": ("l_brow", "r_brow"),
    "eyes": ("l_eye", "r_eye"),
    "ears": ("l_ear", "r_ear"),
    "lips": ("u_lip", "l_lip"),
    "mouth_all": ("mouth", "u_lip", "l_lip"),
    "face_skin": ("skin", "l_ear", "r_ear", "nose", "neck"),  # the seed's face_color region {1,7,8,10,14}
    "head": REGIONS[1:],  # labels 1-18
}

# iBUG 68-point groups (0-based, docs/method.md §2).
LANDMARK_GROUPS: dict[str, tuple[int, ...]] = {
    "jaw": tuple(range(0, 17)),
    "brows": tuple(range(17, 27)),
    "nose": tuple(range(27, 36)),
    "right_eye": tuple(range(36, 42)),
    "left_eye": tuple(range(42, 48)),
    "eyes": tuple(range(36, 48)),
    "outer_lip": tuple(range(48, 60)),
    "inner_lip": tuple(range(60, 68)),
    "mouth": tuple(range(48, 68)),
    "all": tuple(range(68)),
}
NUM_LANDMARKS = 68


def expand_regions(names: list[str] | tuple[str, ...], key: str = "regions") -> list[str]:
    """Expand group names and validate; the error names the key and the allowed values."""
    out: list[str] = []
    for name in names:
        if name in REGION_GROUPS:
            out.extend(REGION_GROUPS[name])
        elif name in REGIONS:
            out.append(name)
        else:
            allowed = ", ".join(list(REGIONS) + list(REGION_GROUPS))
            raise ValueError(f"{key}: unknown region {name!r}; allowed values: {allowed}")
    if not out:
        raise ValueError(f"{key}: no region given")
    return sorted(set(out), key=out.index)


def landmark_group(name: str, key: str = "group") -> tuple[int, ...]:
    if name not in LANDMARK_GROUPS:
        raise ValueError(f"{key}: unknown landmark group {name!r}; allowed values: {', '.join(LANDMARK_GROUPS)}")
    return LANDMARK_GROUPS[name]
