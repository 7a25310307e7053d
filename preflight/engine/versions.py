"""Installed TensorFlow / Keras / keras-tuner / tensorboard versions, read from package metadata.

`installed_versions()` reads `importlib.metadata` only, so nothing is imported (TensorFlow least of all);
`version_problems(versions, uses_tuner, environ)` names the combinations known to break a run, each with
its fix. preflight.analysis.checks turns them into findings.
"""
from __future__ import annotations

import importlib.metadata
import re
from typing import Mapping

# Distribution names as pip knows them.
DISTRIBUTIONS = ("tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tf-keras", "keras", "keras-tuner",
                 "tensorboard")


def installed_versions() -> dict[str, str | None]:
    """Distribution name -> installed version, None when it is not installed."""
    versions: dict[str, str | None] = {}
    for name in DISTRIBUTIONS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _major_minor(version: str | None) -> tuple[int, int] | None:
    match = re.match(r"(\d+)\.(\d+)", version or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def version_problems(versions: Mapping[str, str | None], uses_tuner: bool,
                     environ: Mapping[str, str]) -> list[dict[str, str]]:
    """[{"id", "severity", "message"}] for each known-bad combination; the message ends with the fix."""
    problems: list[dict[str, str]] = []

    def add(slug: str, severity: str, message: str) -> None:
        problems.append({"id": slug, "severity": severity, "message": message})

    tf = _major_minor(versions.get("tensorflow"))
    keras = _major_minor(versions.get("keras"))
    tuner = _major_minor(versions.get("keras-tuner"))
    second_tf = [name for name in ("tensorflow-cpu", "tensorflow-gpu") if versions.get(name)]
    if versions.get("tensorflow") and second_tf:
        add("versions-two-tensorflows", "error",
            f"Two TensorFlow builds are installed: tensorflow {versions['tensorflow']} and "
            + ", ".join(f"{n} {versions[n]}" for n in second_tf)
            + ": they share one `tensorflow` package folder, so whichever was installed last wins and the other's "
            f"files are left half-replaced. Fix: pip uninstall -y {' '.join(second_tf)} tensorflow && "
            "pip install tensorflow")
    if tf and tf >= (2, 16) and keras and keras < (3, 0):
        add("versions-keras-2", "error",
            f"tensorflow {versions['tensorflow']} needs Keras 3, but keras {versions['keras']} is installed: "
            "`import tensorflow` fails or tf.keras is broken. Fix: pip install -U 'keras>=3'")
    legacy = environ.get("TF_USE_LEGACY_KERAS", "").lower() in ("1", "true")
    tf_keras = _major_minor(versions.get("tf-keras"))
    if legacy and not tf_keras:
        add("versions-legacy-keras-missing", "error",
            "TF_USE_LEGACY_KERAS=1 asks tf.keras for Keras 2, but tf-keras is not installed: `tf.keras` "
            f"fails at import. Fix: pip install 'tf-keras~={versions.get('tensorflow') or '2.x'}', "
            "or unset TF_USE_LEGACY_KERAS to use Keras 3")
    elif tf and tf_keras and tf_keras != tf:
        add("versions-tf-keras-mismatch", "warning" if not legacy else "error",
            f"tf-keras {versions['tf-keras']} does not match tensorflow {versions['tensorflow']} (their "
            "major.minor must be equal): with TF_USE_LEGACY_KERAS=1, tf.keras imports fail or misbehave. "
            f"Fix: pip install 'tf-keras~={tf[0]}.{tf[1]}.0'")
    if uses_tuner and tuner and not versions.get("tensorboard") and tf:
        add("versions-tuner-without-tensorboard", "error",
            f"keras-tuner {versions['keras-tuner']} imports tensorboard in every trial on the TensorFlow "
            f"backend, and tensorflow {versions['tensorflow']} no longer installs it: every trial fails with "
            "ModuleNotFoundError and the search stops after max_consecutive_failed_trials. "
            "Fix: pip install tensorboard")
    if uses_tuner and tuner and keras and keras >= (3, 0) and tuner < (1, 4):
        add("versions-tuner-too-old", "error",
            f"keras-tuner {versions['keras-tuner']} predates Keras 3 (keras {versions['keras']}): its "
            "hypermodels fail to build. Fix: pip install -U 'keras-tuner>=1.4'")
    return problems
