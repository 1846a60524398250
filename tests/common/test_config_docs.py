"""The key tables of docs/configuration.md are the config model's: every field
documented, every documented key parsed into its field, keys read from the
raw config really read, and the file as scripts/genconfigdoc.py writes it."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from services.certs.preflight import INTERVAL_SECONDS
from services.common.config import DaemonConfig, config_from_dict
from services.common.config_docs import OUR_KEYS, UPSTREAM_KEYS, KeyDoc, update_document
from services.common.kube_watch import WatchTiming
from services.common.logs import setup_logging

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "configuration.md"
ALL_KEYS = (*UPSTREAM_KEYS, *OUR_KEYS)


def test_every_field_of_the_model_is_documented_once() -> None:
    documented = [d.field for d in ALL_KEYS if d.field]
    assert sorted(documented) == sorted(f.name for f in fields(DaemonConfig) if f.name != "raw")
    keys = [d.key for d in ALL_KEYS]
    assert len(keys) == len(set(keys))


def _sample(default: Any) -> Any:
    """A JSON value of the field's type that differs from its default."""
    if isinstance(default, bool):
        return not default
    if isinstance(default, int | float):
        return 4242
    if isinstance(default, tuple):
        return ["x-sample"]
    if isinstance(default, dict):
        return {"gateway": {"healthPort": 4242}}
    return "/x-sample"


@pytest.mark.parametrize("doc", [d for d in ALL_KEYS if d.field], ids=lambda d: d.key)
def test_each_documented_key_sets_its_field(doc: KeyDoc) -> None:
    default = getattr(DaemonConfig(), doc.field)
    if doc.field == "per_node_certificate":
        value: Any = {"enabled": True}
    elif doc.field == "log_options":
        value = {"maxSize": 1}
    elif doc.field == "metrics_port":
        value = 9191
    elif doc.field == "cni_call_timeout_seconds":
        value = 42  # bounded below the shim's wait
    else:
        value = _sample(default)
    for key in (doc.key, *doc.aliases):
        assert getattr(config_from_dict({key: value}), doc.field) != default, key


def test_keys_read_from_the_raw_config_are_read_where_documented() -> None:
    sources = "\n".join(p.read_text() for p in (REPO / "services").rglob("*.py") if "api" not in p.parts)
    for doc in (d for d in ALL_KEYS if not d.field):
        assert re.search(rf'"{doc.key}"', sources), doc.key
    raw_defaults = {"rbacPreflightIntervalSeconds": INTERVAL_SECONDS, "cacheListPageSize": WatchTiming().list_limit}
    for doc in (d for d in ALL_KEYS if not d.field):
        assert float(doc.default) == float(raw_defaults[doc.key]), doc.key


def test_the_tables_in_the_file_are_the_models() -> None:
    text = DOC.read_text()
    assert update_document(text) == text, "run python scripts/genconfigdoc.py"
    done = subprocess.run(
        [sys.executable, "scripts/genconfigdoc.py", "--check"], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout


def test_a_changed_model_makes_the_check_fail() -> None:
    text = DOC.read_text()
    stale = text.replace("| `podWaitMs` | 3000 |", "| `podWaitMs` | 2999 |")
    assert stale != text
    assert update_document(stale) == text
    with pytest.raises(ValueError, match="markers"):
        update_document(text.replace("<!-- END GENERATED our keys -->", ""))


@pytest.mark.parametrize(("to_stderr", "log_file", "streams"), [(True, True, 2), (False, True, 1), (False, False, 1)])
def test_log_to_stderr(tmp_path: Path, to_stderr: bool, log_file: bool, streams: int) -> None:
    root = logging.getLogger()
    saved = root.handlers[:]
    try:
        setup_logging("cache", "info", str(tmp_path / "c.log") if log_file else "", to_stderr=to_stderr)
        kinds = [type(h).__name__ for h in root.handlers]
        assert len(kinds) == streams
        assert ("StreamHandler" in kinds) == (to_stderr or not log_file)
    finally:
        for handler in root.handlers:
            if handler not in saved:
                handler.close()
        root.handlers[:] = saved
