"""The package's layers (README, "Design"): every import in preflight/ points down or sideways within
its own folder, never up. Reads the source with ast; imports nothing of preflight, runs no TensorFlow."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "preflight"
SHARED = {"preflight", "preflight.errors", "preflight.units", "preflight.measurements", "preflight.version"}
# layer -> the layers it may import (its own always included)
ALLOWED = {
    "shared": {"shared"},
    "analysis": {"shared", "analysis"},
    "engine": {"shared", "analysis", "engine"},
    "render": {"shared", "analysis", "render"},
    "whatif": {"shared", "analysis", "engine", "whatif"},
    "tuner": {"shared", "analysis", "engine", "tuner"},
    "doors": {"shared", "analysis", "engine", "render", "whatif", "tuner", "doors"},
}


def layer_of(module: str) -> str:
    if module in SHARED:
        return "shared"
    parts = module.split(".")
    if len(parts) > 2 or (len(parts) == 2 and (PACKAGE / parts[1]).is_dir()):
        return parts[1] if parts[1] in ALLOWED else "doors"
    return "doors"


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(relative.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name.startswith("preflight"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("preflight"):
            for alias in node.names:  # `from preflight.engine import plan` imports preflight.engine.plan
                candidate = f"{node.module}.{alias.name}"
                is_module = (PACKAGE.parent / (candidate.replace(".", "/") + ".py")).exists()
                yield candidate if is_module else node.module


def test_nothing_in_preflight_imports_upward():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        importer = module_name(path)
        importer_layer = "doors" if importer == "preflight" else layer_of(importer)  # its lazy attributes
        for imported in imported_modules(path):
            if layer_of(imported) not in ALLOWED[importer_layer]:
                upward.append(f"{importer} ({importer_layer}) imports {imported} ({layer_of(imported)})")
    assert upward == [], "\n".join(upward)


def test_the_layers_are_the_folders_the_readme_draws():
    folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert folders == {"engine", "analysis", "render", "whatif", "tuner"}
    for folder in folders:
        docstring = ast.get_docstring(ast.parse((PACKAGE / folder / "__init__.py").read_text(encoding="utf-8")))
        assert docstring and "May import" in docstring, folder
