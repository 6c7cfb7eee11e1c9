"""``ice-exp`` / ``python -m ice_exp``: the discovery app (ice_exp/apps/discover.py; the run: ice_exp/discovery.py)."""
from ice_exp.apps.discover import main

__all__ = ["main"]
