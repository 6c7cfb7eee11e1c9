"""The toyface counterparts of the seed's seven subspaces (method.md §5) and their true factor groups.

Each group is fixed by what its factors do to the drawn face, never by what a solver returns:
- face_boundary: the factors that move only the jaw outline (face width, jaw length, chin shape);
  yaw also moves the jaw but moves every other landmark too, so it is not in the group.
- eye_shape: the factors that move only the eye landmarks (eye size, openness, spacing); brows are drawn
  at a fixed spacing, so they do not follow the eyes.
- eye_photometry: the factors whose pixels stay inside the eye region: the iris colour and the eyes'
  shape (an eye-pixel criterion cannot tell a shape change inside the region from a colour change).
- hair_photometry: the factors whose pixels stay inside the (dilated) hair region: hair colour and length.
- lip_color: lip colour, the only factor that changes lip pixels without moving mouth landmarks.
- face_color: skin tone, which shifts the whole skin region's colour uniformly (lighting adds a gradient).
- mouth_shape: the factors that change the mouth landmarks' shape (width, openness, smile curvature).
"""
from __future__ import annotations

TRUE_GROUPS: dict[str, tuple[str, ...]] = {
    "face_boundary": ("face_width", "jaw_length", "chin_shape"),
    "eye_shape": ("eye_size", "eye_openness", "eye_spacing"),
    "eye_photometry": ("iris_colour", "eye_size", "eye_openness", "eye_spacing"),
    "hair_photometry": ("hair_colour", "hair_length"),
    "lip_color": ("lip_colour",),
    "face_color": ("skin_tone",),
    "mouth_shape": ("mouth_width", "mouth_openness", "smile_curvature"),
}


def true_group(task: str) -> tuple[str, ...]:
    if task not in TRUE_GROUPS:
        raise ValueError(f"task: no toyface ground truth for {task!r}; known tasks: {', '.join(TRUE_GROUPS)}")
    return TRUE_GROUPS[task]
