"""The entry points (Hydra or argparse apps). Nothing in the package imports them; each reads top-down."""
