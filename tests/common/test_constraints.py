"""Every dependency is pinned: the installed environment (set up from
constraints/*.txt by scripts/setup.sh) matches the files exactly, offline."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]


def constraints_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("constraints_script", REPO / "scripts" / "constraints.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_installed_environment_matches_the_constraint_files() -> None:
    script = constraints_script()
    for name, text in script.render().items():
        assert (REPO / "constraints" / name).read_text() == text, (
            f"constraints/{name} is not what is installed: run scripts/setup.sh, or after changing "
            "pyproject.toml regenerate with `.venv/bin/python scripts/constraints.py`"
        )


def test_the_image_installs_the_runtime_pins_before_the_sources() -> None:
    containerfile = (REPO / "compose" / "Containerfile").read_text()
    deps = containerfile.index("constraints/runtime.txt")
    sources = containerfile.index("COPY services/")
    assert deps < sources, "dependencies must be a layer of their own, before the sources"
