"""write_atomic: the file ends with exactly the mode asked for, whatever the
umask, and replaces what was there; its directory is made when missing."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.common.files import write_atomic


@pytest.fixture
def umask() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.parametrize("process_umask", [0o022, 0o077, 0o277, 0o000])
@pytest.mark.parametrize("mode", [0o600, 0o644, 0o640, 0o400])
@pytest.mark.usefixtures("umask")
def test_the_file_gets_the_mode_asked_for(tmp_path: Path, process_umask: int, mode: int) -> None:
    os.umask(process_umask)
    target = tmp_path / "made" / "on" / "demand" / "x.json"
    for content in (b"first", "second"):
        write_atomic(str(target), content, mode=mode, durable=False)
        assert stat.S_IMODE(target.stat().st_mode) == mode
    assert target.read_bytes() == b"second"
    assert sorted(p.name for p in target.parent.iterdir()) == ["x.json"]  # no temp file left


def test_a_large_payload_is_written_whole(tmp_path: Path) -> None:
    payload = os.urandom(3 * 1024 * 1024)
    write_atomic(str(tmp_path / "big"), payload)
    assert (tmp_path / "big").read_bytes() == payload
