"""The installed shim runs under `python3 -I -S` and loads nothing but a few builtin/C stdlib modules."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.shim.conftest import call_shim, cni_env, network_conf
from tests.shim.fake_daemon import Answer, FakeDaemon

RESULT = b'{"Result": {"cniVersion": "1.0.0", "ips": [{"address": "10.1.0.2/24"}]}}'

# Everything the shim may add to what `python3 -I -S -c pass` already loads:
# all builtin or C accelerators. json, re, enum, socket, os, http.* must never appear.
ALLOWED_EXTRA = {"_json", "_socket", "binascii", "posix", "time", "marshal", "zlib"}


def imported_modules(importtime_stderr: str) -> set[str]:
    names = set()
    for line in importtime_stderr.splitlines():
        if line.startswith("import time:") and "|" in line and "imported package" not in line:
            names.add(line.rsplit("|", 1)[1].strip())
    return names


def baseline_modules() -> set[str]:
    proc = subprocess.run(
        ["/usr/bin/python3", "-I", "-S", "-X", "importtime", "-c", "pass"], capture_output=True, text=True, check=True
    )
    return imported_modules(proc.stderr)


def test_shebang_is_an_absolute_interpreter_with_combined_flags(shim_bin: Path) -> None:
    # The kernel passes everything after the interpreter as ONE argument: "-IS", not "-I -S".
    assert shim_bin.read_bytes().split(b"\n", 1)[0] == b"#!/usr/bin/python3 -IS"


def test_add_imports_only_builtin_stdlib_modules(shim_bin: Path, socket_dir: Path) -> None:
    with FakeDaemon(socket_dir, "ours", cni_answers=[Answer(200, RESULT)]):
        proc = subprocess.run(
            ["/usr/bin/python3", "-IS", "-X", "importtime", str(shim_bin)],
            input=network_conf(socket_dir),
            env=cni_env("ADD"),
            capture_output=True,
            text=False,
            timeout=30,
        )
    assert proc.returncode == 0, proc.stdout
    modules = imported_modules(proc.stderr.decode())
    extra = modules - baseline_modules()
    assert extra <= ALLOWED_EXTRA, f"shim imported {sorted(extra - ALLOWED_EXTRA)}"
    assert all(name.split(".")[0] in sys.stdlib_module_names for name in modules)
    assert not modules & {"json", "re", "enum", "socket", "os", "http", "http.client", "__future__"}
    assert "site" not in modules  # -S really is in effect


def test_isolated_mode_ignores_pythonpath_and_the_script_dir(shim_bin: Path, tmp_path: Path) -> None:
    """A `_json.py` on PYTHONPATH or next to the binary would shadow the accelerator without -I."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    copy = bin_dir / "multus-shim"
    copy.write_bytes(shim_bin.read_bytes())
    copy.chmod(0o755)
    poison = "raise SystemExit('shadowed stdlib module imported')\n"
    (bin_dir / "_json.py").write_text(poison)
    (tmp_path / "binascii.py").write_text(poison)
    env = {"CNI_COMMAND": "VERSION", "PYTHONPATH": str(tmp_path), "PYTHONSTARTUP": str(tmp_path / "binascii.py")}
    result = call_shim(copy, env, b'{"cniVersion": "1.0.0"}')
    assert result.returncode == 0, result
    assert result.json()["cniVersion"] == "1.0.0"


def test_version_flag(shim_bin: Path) -> None:
    proc = subprocess.run([str(shim_bin), "-version"], capture_output=True, text=True, timeout=10)
    assert proc.returncode == 0 and proc.stdout.startswith("multus-shim: ")


def test_the_shim_leaves_without_finalization_and_loses_no_output(shim_bin: Path) -> None:
    """It ends with posix._exit (no interpreter teardown): what it wrote is still
    all there, large or small, and a closed stdout is no crash."""
    env = {"CNI_COMMAND": "VERSION", "PATH": "/usr/bin:/bin"}
    piped = subprocess.run([str(shim_bin)], input=b'{"cniVersion": "1.0.0"}', env=env, capture_output=True, timeout=10)
    assert piped.returncode == 0 and json.loads(piped.stdout)["cniVersion"] == "1.0.0", piped
    closed = subprocess.run(
        ["/bin/sh", "-c", f"{shim_bin} >&-"], input=b'{"cniVersion": "1.0.0"}', env=env, capture_output=True, timeout=10
    )
    assert closed.returncode == 0 and closed.stderr == b"", closed
    missing_env = subprocess.run([str(shim_bin)], input=b"{}", env={"PATH": "/usr/bin:/bin"}, capture_output=True)
    assert missing_env.returncode == 1 and json.loads(missing_env.stdout)["code"] == 4, missing_env
