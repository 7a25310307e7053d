"""Settings: `config` layers [tool.preflight] in pyproject.toml, PREFLIGHT_* environment variables and flags
(and turns the CI gate's thresholds into preflight.analysis.gate's); `validate` checks each value and says what
is wrong with it. May import preflight.common, preflight.errors, the analysis (target names) and the engine
(which backends are installed, what a model file is)."""
