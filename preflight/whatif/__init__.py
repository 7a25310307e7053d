"""Measured what-ifs: rebuilt variants of the user's model (variants.py, needs TF) and their ranking into
recommendations (rank.py, pure). Importing this package imports no TensorFlow."""
from __future__ import annotations

from preflight.whatif.rank import rank_recommendations

__all__ = ["rank_recommendations"]
