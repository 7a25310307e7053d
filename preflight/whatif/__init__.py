"""Measured what-ifs: rebuilt variants of the user's model (variants.py, needs TF, applied in the dry-run
child), the runs behind the recommendations (recommend.py: the batch size confirmed under the budget, each
variant measured by the engine; preflight.analysis.recommendations ranks and applies what they found) and one variant measured on its own
(measure.py). May import the engine, analysis and the shared modules (preflight.errors, preflight.common);
never the tuner, the renderers or the doors. Importing this package imports no TensorFlow."""
