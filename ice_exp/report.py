"""``python -m ice_exp.report``: the name README gives ``ice-report`` (ice_exp/apps/report.py)."""
from ice_exp.apps.report import main

if __name__ == "__main__":
    raise SystemExit(main())
