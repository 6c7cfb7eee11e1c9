"""One writer for every table the tools write: ice-report, ice-compare and the counterfactual summary.

Each tool builds its rows as a pandas DataFrame; this module writes it as markdown (the ``.md`` files, also
what the tools print), CSV (every value at full precision) or a booktabs LaTeX table, with one number format
for the text tables, so that the same value reads the same in every table.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

MISSING = "–"  # a text cell without a value (NaN, None)
LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
         "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$"}


def text(value: Any) -> str:
    """A cell as text: whole numbers below 1e6 in full, other floats to 3 significant digits, NaN and None as
    MISSING, anything else as ``str``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e6 else f"{value:.3g}"
    return str(value)


def _md_escape(cell: Any) -> str:
    return text(cell).replace("|", "\\|").replace("\n", " ")


def markdown(frame: pd.DataFrame) -> str:
    """A pipe table with padded columns (readable as printed, rendered as markdown); cells through :func:`text`."""
    cells = frame.map(_md_escape).rename(columns=_md_escape)
    return cells.to_markdown(index=False, disable_numparse=True)


def latex_escape(cell: Any) -> str:
    return "".join(LATEX.get(ch, ch) for ch in text(cell))


def latex(frame: pd.DataFrame, caption: str, column_format: str) -> str:
    """A booktabs table (``\\usepackage{booktabs}``) in a floating ``table``; caption, header and cells escaped."""
    cells = frame.map(latex_escape).rename(columns=latex_escape)
    return cells.style.hide(axis="index").to_latex(hrules=True, caption=latex_escape(caption), position="t",
                                                  position_float="centering", column_format=column_format)


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Every value at full precision; a NaN or missing value is an empty cell."""
    frame.to_csv(path, index=False)
