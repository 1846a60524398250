"""Install our recorder test plugin into a bin dir next to links to the real reference plugins."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

RECORDER = Path(__file__).resolve().parents[1] / "plugins" / "recorder.py"
REFERENCE_BIN = Path("/usr/lib/cni")


def make_bin_dir(path: Path, names: tuple[str, ...] = ("recorder",), with_reference: bool = True) -> Path:
    """A CNI bin dir holding the recorder under each of `names` (one plugin type per name),
    plus symlinks to every reference plugin when `with_reference`."""
    path.mkdir(parents=True, exist_ok=True)
    source = RECORDER.read_text().split("\n", 1)[1]
    for name in names:
        target = path / name
        target.write_text(f"#!{sys.executable}\n{source}")
        target.chmod(0o755)
    if with_reference and REFERENCE_BIN.is_dir():
        for plugin in REFERENCE_BIN.iterdir():
            link = path / plugin.name
            if not link.exists():
                os.symlink(plugin, link)
    return path


def recorded_calls(record_dir: Path) -> list[dict[str, Any]]:
    calls = record_dir / "calls.jsonl"
    if not calls.exists():
        return []
    return [json.loads(line) for line in calls.read_text().splitlines() if line.strip()]
