"""Measured what-ifs: rebuilt variants of the user's model (variants.py, needs TF, applied in the dry-run
child), their ranking into recommendations (rank.py, pure), the run's recommendations (recommend.py:
the batch size confirmed, each variant measured by the engine) and one variant measured on its own
(measure.py). May import the engine, analysis and the shared modules (preflight.errors, preflight.common);
never the tuner, the renderers or the doors. Importing this package imports no TensorFlow."""
from __future__ import annotations

from preflight.whatif.rank import rank_recommendations

__all__ = ["rank_recommendations"]
