"""multus-install-shim: absolute interpreter, atomic, idempotent, refuses version-manager shims."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from shim import install, multus_shim
from tests.shim.conftest import call_shim

REPO = Path(__file__).resolve().parents[2]
REAL_PYTHON = "/usr/bin/python3"


def run_installer(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shim.install", *args], cwd=REPO, capture_output=True, text=True, timeout=60
    )


def test_installs_an_executable_with_an_absolute_interpreter_line(tmp_path: Path) -> None:
    proc = run_installer("--cni-bin-dir", str(tmp_path / "bin"))
    assert proc.returncode == 0, proc.stderr
    target = tmp_path / "bin" / "multus-shim"
    assert "installed" in proc.stdout
    assert target.read_bytes().startswith(b"#!/usr/bin/python3 -IS\n")
    assert stat.S_IMODE(target.stat().st_mode) == 0o755
    result = call_shim(target, {"CNI_COMMAND": "VERSION"}, b'{"cniVersion": "1.0.0"}')
    assert result.json()["supportedVersions"][-1] == "1.1.0"


def test_second_run_changes_nothing(tmp_path: Path) -> None:
    assert run_installer("--cni-bin-dir", str(tmp_path)).returncode == 0
    target = tmp_path / "multus-shim"
    before = target.stat()
    proc = run_installer("--cni-bin-dir", str(tmp_path))
    assert proc.returncode == 0 and "unchanged" in proc.stdout
    after = target.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["multus-shim"]


def test_changed_content_is_replaced_by_rename(tmp_path: Path) -> None:
    target = tmp_path / "multus-shim"
    target.write_bytes(b"#!/bin/sh\necho old upstream binary\n")
    old_inode = target.stat().st_ino
    assert install.install(tmp_path, REAL_PYTHON) is True
    assert target.stat().st_ino != old_inode  # a new file renamed over, never rewritten in place
    assert target.read_bytes().startswith(b"#!/usr/bin/python3 -IS\n")
    assert install.install(tmp_path, REAL_PYTHON) is False


def test_same_content_with_wrong_mode_gets_its_mode_back(tmp_path: Path) -> None:
    install.install(tmp_path, REAL_PYTHON)
    target = tmp_path / "multus-shim"
    target.chmod(0o600)
    assert install.install(tmp_path, REAL_PYTHON) is False
    assert stat.S_IMODE(target.stat().st_mode) == 0o755


def test_failed_write_leaves_the_old_file_and_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "multus-shim"
    target.write_bytes(b"old")

    def refuse(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError):
        install.write_if_changed(target, b"new content")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["multus-shim"]


def test_render_is_deterministic_and_records_the_source_hash() -> None:
    source = install.SHIM_SOURCE.read_bytes()
    first = install.render_launcher(REAL_PYTHON, source, b"MAGC", b"code")
    assert first == install.render_launcher(REAL_PYTHON, source, b"MAGC", b"code")
    header = first.decode().splitlines()
    assert header[0] == "#!/usr/bin/python3 -IS"
    assert multus_shim.SHIM_VERSION in header[1]
    assert hashlib.sha256(source).hexdigest() in header[2]


def test_launcher_falls_back_to_source_for_another_interpreter_version(tmp_path: Path) -> None:
    """Bytecode compiled for some other Python (wrong magic) is ignored; the embedded source runs."""
    source = install.SHIM_SOURCE.read_bytes()
    target = tmp_path / "multus-shim"
    target.write_bytes(install.render_launcher(REAL_PYTHON, source, b"\x00\x00\r\n", b"garbage"))
    target.chmod(0o755)
    result = call_shim(target, {"CNI_COMMAND": "VERSION"}, b'{"cniVersion": "0.4.0"}')
    assert result.returncode == 0, result
    assert result.json()["cniVersion"] == "0.4.0"


@pytest.mark.parametrize(
    ("case", "interpreter", "needle"),
    [
        ("relative path", "python3", "absolute path"),
        ("pyenv shim dir", "/root/.pyenv/shims/python3", "version-manager shim"),
        ("missing file", "/usr/bin/python-nonexistent", "no such file"),
        ("a native binary that is not python", "/usr/bin/env", "not a python interpreter"),
    ],
)
def test_refuses_bad_interpreters(case: str, interpreter: str, needle: str) -> None:
    assert needle in install.interpreter_problem(interpreter, Path("/")), case


def test_refuses_a_wrapper_script(tmp_path: Path) -> None:
    wrapper = tmp_path / "python3"
    wrapper.write_text('#!/usr/bin/env bash\nexec pyenv exec python3 "$@"\n')
    wrapper.chmod(0o755)
    assert "not a native executable" in install.interpreter_problem(str(wrapper), Path("/"))
    proc = run_installer("--cni-bin-dir", str(tmp_path / "bin"), "--interpreter", str(wrapper))
    assert proc.returncode == 1
    assert "not a native executable" in proc.stderr
    assert not (tmp_path / "bin" / "multus-shim").exists()


def test_accepts_the_real_interpreter() -> None:
    assert install.interpreter_problem(REAL_PYTHON, Path("/")) == ""


def test_interpreter_checked_inside_the_host_root(tmp_path: Path) -> None:
    """From an init container: /usr/bin/python3 is looked up under --host-root, absolute links included."""
    host = tmp_path / "host"
    (host / "usr" / "bin").mkdir(parents=True)
    (host / "opt" / "py" / "bin").mkdir(parents=True)
    real = host / "opt" / "py" / "bin" / "python3.12"
    real.write_bytes(Path(REAL_PYTHON).resolve().read_bytes()[:64])  # an ELF header is all that is checked
    real.chmod(0o755)
    (host / "usr" / "bin" / "python3").symlink_to("/opt/py/bin/python3.12")  # absolute: must stay in the root
    assert install.resolve_in_root("/usr/bin/python3", host) == real
    assert install.interpreter_problem("/usr/bin/python3", host) == ""
    assert "no such file" in install.interpreter_problem("/usr/bin/python3", tmp_path / "empty-root")


def test_symlink_loop_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    with pytest.raises(install.InstallError):
        install.resolve_in_root("/a", tmp_path)


def test_bytecode_comes_from_the_target_interpreter() -> None:
    magic, code, label = install.compile_shim(REAL_PYTHON, Path("/"), install.SHIM_SOURCE.read_bytes())
    expected = subprocess.run(
        [
            REAL_PYTHON,
            "-IS",
            "-c",
            "import sys; sys.stdout.buffer.write(sys.modules['_frozen_importlib_external'].MAGIC_NUMBER)",
        ],
        capture_output=True,
        check=True,
    ).stdout
    assert (magic, label) == (expected, REAL_PYTHON)
    assert code


def test_unrunnable_host_interpreter_falls_back_to_ours(tmp_path: Path) -> None:
    """--host-root without a chroot-able root: compiled by our interpreter, source fallback covers the rest."""
    magic, _, label = install.compile_shim("/usr/bin/python3", tmp_path, b"x = 1\n")
    assert magic and "could not be run" in label
    assert os.path.basename(sys.executable) in label
