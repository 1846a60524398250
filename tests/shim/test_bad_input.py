"""Bad input through the installed binary: a CNI error object with the right code, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.shim.conftest import call_shim, cni_env, network_conf

CONF = b'{"cniVersion": "0.4.0", "name": "n", "type": "multus-shim", "daemonSocketDir": "/nonexistent/dir"}'


@pytest.mark.parametrize(
    ("case", "env", "stdin", "code", "cni_version"),
    [
        ("no CNI_COMMAND", {"CNI_COMMAND": "<unset>"}, CONF, 4, "0.4.0"),
        ("unknown CNI_COMMAND", {"CNI_COMMAND": "ATTACH"}, CONF, 4, "0.4.0"),
        ("ADD without CNI_CONTAINERID", {"CNI_CONTAINERID": "<unset>"}, CONF, 4, "0.4.0"),
        ("ADD without CNI_NETNS", {"CNI_NETNS": "<unset>"}, CONF, 4, "0.4.0"),
        ("ADD without CNI_PATH", {"CNI_PATH": "<unset>"}, CONF, 4, "0.4.0"),
        ("container id with a slash", {"CNI_CONTAINERID": "../../etc"}, CONF, 4, "0.4.0"),
        ("missing env is reported before bad JSON, as libcni", {"CNI_IFNAME": "<unset>"}, b"{x", 4, "1.1.0"),
        ("invalid JSON on stdin", {}, b'{"cniVersion": "0.4.0",', 6, "1.1.0"),
        ("empty stdin", {}, b"", 6, "1.1.0"),
        ("valid JSON, not a config", {}, b'["not", "an", "object"]', 7, "1.1.0"),
        ("daemonSocketDir of the wrong type", {}, b'{"cniVersion": "0.3.1", "daemonSocketDir": 5}', 7, "1.1.0"),
        ("a cniVersion we do not speak", {}, b'{"cniVersion": "0.9.9"}', 1, "0.9.9"),
        ("bad deadline in the runtime's env", {"MULTUS_SHIM_READY_TIMEOUT": "forever"}, CONF, 4, "0.4.0"),
    ],
)
def test_bad_input(shim_bin: Path, case: str, env: dict[str, str], stdin: bytes, code: int, cni_version: str) -> None:
    result = call_shim(shim_bin, cni_env("ADD", **env), stdin)
    assert result.returncode == 1, case
    assert b"Traceback" not in result.stderr + result.stdout, case
    error = result.json()
    assert error["code"] == code, (case, error)
    assert error["cniVersion"] == cni_version, case
    assert isinstance(error["msg"], str) and error["msg"], case


def test_version_needs_no_other_env(shim_bin: Path) -> None:
    result = call_shim(shim_bin, {"CNI_COMMAND": "VERSION"}, b'{"cniVersion": "0.4.0"}')
    assert result.returncode == 0
    assert result.json()["cniVersion"] == "0.4.0"


def test_unexpected_failure_is_a_cni_error_not_a_traceback(shim_bin: Path, socket_dir: Path) -> None:
    """The spool dir path is a regular file: an OSError deep inside still ends as a CNI error."""
    (socket_dir / "del-spool").write_text("in the way")
    env = cni_env("DEL", MULTUS_SHIM_DEL_TIMEOUT="0")
    result = call_shim(shim_bin, env, network_conf(socket_dir))
    assert result.returncode == 1
    assert b"Traceback" not in result.stderr
    assert result.json()["code"] == 5
