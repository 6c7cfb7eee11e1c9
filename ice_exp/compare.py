"""``python -m ice_exp.compare``: the name README gives ``ice-compare`` (ice_exp/apps/compare.py)."""
from ice_exp.apps.compare import main

if __name__ == "__main__":
    main()
