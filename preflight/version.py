"""The package's version: one place, read by pyproject.toml (hatch) and written into every report."""
__version__ = "0.1.0"
