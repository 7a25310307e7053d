"""The package's version, from its installed metadata (pyproject.toml holds the one copy); written into every
report."""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("preflight")
except PackageNotFoundError:  # a checkout on sys.path, never installed
    __version__ = "0+unknown"
