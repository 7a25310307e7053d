"""The package's layers (README, "Design"): every import in preflight/ points down or sideways within
its own folder, never up. Reads the source with ast; imports nothing of preflight, runs no TensorFlow."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "preflight"
SHARED = {"preflight.errors"}
# layer -> the layers it may import (its own always included)
ALLOWED = {
    "shared": {"shared"},
    "common": {"shared", "common"},
    "analysis": {"shared", "common", "analysis"},
    "settings": {"shared", "common", "analysis", "engine", "settings"},  # target names, installed backends
    "engine": {"shared", "common", "analysis", "engine"},
    "render": {"shared", "common", "analysis", "render"},
    "whatif": {"shared", "common", "analysis", "engine", "whatif"},
    "tuner": {"shared", "common", "analysis", "engine", "tuner"},
    "cli": {"shared", "common", "settings", "analysis", "engine", "render", "whatif", "tuner", "cli", "doors"},
    "child": {"shared", "common", "analysis", "engine", "whatif", "tuner", "child"},
    "doors": {"shared", "common", "settings", "analysis", "engine", "render", "whatif", "tuner", "cli", "doors"},
}
LOOSE_MODULES_AT_MOST = 6  # the doors (api, keras, pytest_plugin), errors, and the two package files


def layer_of(module: str) -> str:
    if module in SHARED:
        return "shared"
    parts = module.split(".")
    if len(parts) > 2 or (len(parts) == 2 and (PACKAGE / parts[1]).is_dir()):
        return parts[1] if parts[1] in ALLOWED else "doors"
    return "doors"  # preflight itself (its lazy attributes), api, keras, pytest_plugin


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
    assert folders == {"common", "settings", "engine", "child", "analysis", "render", "whatif", "tuner", "cli"}
    for folder in folders:
        docstring = ast.get_docstring(ast.parse((PACKAGE / folder / "__init__.py").read_text(encoding="utf-8")))
        assert docstring and ("May import" in docstring or "may import" in docstring), folder


def test_few_loose_modules_at_the_top():
    loose = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(loose) <= LOOSE_MODULES_AT_MOST, loose
