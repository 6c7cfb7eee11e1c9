"""What the apps leave out of the console: library deprecations a user cannot act on (each app calls
``quiet_library_warnings`` before its heavy imports)."""
from __future__ import annotations

import warnings

UNACTIONABLE = (r".*`torch\.jit\.script` is deprecated", r".*`isinstance\(treespec, LeafSpec\)` is deprecated")


def quiet_library_warnings() -> None:
    for message in UNACTIONABLE:
        warnings.filterwarnings("ignore", message=message)
