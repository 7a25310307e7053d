"""The one exception family preflight raises, and the exit codes the CLI maps them to.

Only the CLI turns exceptions into exit codes; library code raises these and lets them travel.
"""
from __future__ import annotations

EXIT_OK = 0          # fits, or no budget given
EXIT_GATE_FAILED = 1  # does not fit the budget / a CI threshold failed
EXIT_USAGE = 2       # bad flags, bad config, missing file
EXIT_USER_CODE = 3   # the user's model, data or model.py failed
EXIT_INTERNAL = 4    # a bug in preflight
EXIT_INTERRUPTED = 130  # Ctrl-C: the shell's convention (128 + SIGINT)
EXIT_TERMINATED = 143   # SIGTERM (128 + 15), e.g. a cancelled CI job


class PreflightError(Exception):
    """Base class. `slug` is a short stable id; `hint` says how to fix it."""

    slug = "error"
    exit_code = EXIT_INTERNAL

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  fix: {self.hint}"


class UsageError(PreflightError):
    slug = "usage"
    exit_code = EXIT_USAGE


class ConfigError(PreflightError):
    slug = "config"
    exit_code = EXIT_USAGE


class TargetLoadError(PreflightError):
    """model.py could not be run, or it defines no usable model."""

    slug = "target-load"
    exit_code = EXIT_USER_CODE


class ModelError(PreflightError):
    """The model is unusable as given (e.g. not compiled)."""

    slug = "model"
    exit_code = EXIT_USER_CODE


class DataError(PreflightError):
    """The data does not match the model (shapes, dtypes, too few samples)."""

    slug = "data"
    exit_code = EXIT_USER_CODE


class ProbeError(PreflightError):
    """The dry-run child failed in a way that is not a clean OOM/timeout result."""

    slug = "probe"
    exit_code = EXIT_USER_CODE


class IsolationError(PreflightError):
    """A notebook model could not be handed to the probe child."""

    slug = "isolation"
    exit_code = EXIT_USER_CODE


class RunWarning(UserWarning):
    """A training run watched by preflight.keras.MemoryCallback is heading for trouble: memory near the limit,
    memory growing epoch after epoch, or a run longer than its time limit."""


OUT_OF_MEMORY_TYPES = {"ResourceExhaustedError", "OutOfMemoryError"}  # TensorFlow; PyTorch (CUDA and others)
XLA_RUNTIME_TYPES = {"JaxRuntimeError", "XlaRuntimeError"}


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether `exc` (or an exception it was raised from) is an allocation failure, by type, not by text.

    TF raises `ResourceExhaustedError` whose text may be only "Graph execution error ... [[{{node}}]]";
    PyTorch `torch.OutOfMemoryError`; Keras and user code may wrap either. JAX raises one runtime error type
    for every failure, so there the status code XLA puts first (RESOURCE_EXHAUSTED) is what tells.
    Checked by class name so this module imports no backend.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        names = {cls.__name__ for cls in type(exc).__mro__}
        if isinstance(exc, MemoryError) or names & OUT_OF_MEMORY_TYPES:
            return True
        if names & XLA_RUNTIME_TYPES and str(exc).lstrip().startswith("RESOURCE_EXHAUSTED"):
            return True
        exc = exc.__cause__ or exc.__context__
    return False
