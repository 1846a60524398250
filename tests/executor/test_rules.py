"""Table tests for the executor's pure rules: names, paths, environment, argv,
error parsing, the operator guard."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from services.common import cni
from services.common.peercred import PeerCred
from services.common.validation import netns_path_problem
from services.executor.guard import CallerPolicy, caller_from_metadata
from services.executor.invocation import MINIMAL_PATH, Invocation, cni_environment, plugin_argv, plugin_error
from services.executor.rejection import Reason, Rejected
from services.executor.validation import (
    validate_command,
    validate_extra_env,
    validate_ifname,
    validate_plugin_name,
)

PREFIXES = ("/proc/", "/var/run/netns/", "/run/netns")


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("bridge", True),
        ("host-local", True),
        ("sriov_cni", True),
        ("multus-shim", True),
        ("v1.2+fix", True),
        ("", False),
        (".", False),
        ("..", False),
        ("../bridge", False),
        ("/usr/lib/cni/bridge", False),
        ("bin/bridge", False),
        ("bri\0dge", False),
        (".hidden", False),
        ("-rf", False),
        ("bridge ", False),
        ("br;idge", False),
        ("x" * 256, False),
        ("x" * 255, True),
        ("\u0431ridge", False),  # Cyrillic look-alike
        ("bridge\n", False),
        ("bri\u200bdge", False),  # zero-width space
    ],
)
def test_plugin_names(name: str, ok: bool) -> None:
    if ok:
        assert validate_plugin_name(name) == name
    else:
        with pytest.raises(Rejected) as caught:
            validate_plugin_name(name)
        assert caught.value.reason is Reason.INVALID


@pytest.mark.parametrize(
    ("path", "ok"),
    [
        ("/var/run/netns/pod1", True),
        ("/run/netns/pod1", True),
        ("/proc/123/ns/net", True),
        ("/proc/123/task/124/ns/net", True),
        ("/var/run/netns/", False),
        ("/var/run/netns", False),
        ("/var/run/netns/../../etc/shadow", False),
        ("/var/run/netns//pod1", False),
        ("/var/run/netns/./pod1", False),
        ("var/run/netns/pod1", False),
        ("/etc/netns/pod1", False),
        ("/var/run/netnsX/pod1", False),
        ("/run/netns\0/x", False),
        ("", False),
    ],
)
def test_netns_path_shapes(path: str, ok: bool) -> None:
    assert (netns_path_problem(path, PREFIXES) == "") is ok


@pytest.mark.parametrize("command", ["ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION"])
def test_cni_commands_accepted(command: str) -> None:
    assert validate_command(command) == command


@pytest.mark.parametrize("command", ["", "add", "ADD ", "EXEC", "ADD;DEL"])
def test_other_commands_refused(command: str) -> None:
    with pytest.raises(Rejected):
        validate_command(command)


@pytest.mark.parametrize(
    ("extra", "ok"),
    [
        ({}, True),
        ({"KUBECONFIG": "/etc/cni/net.d/multus.d/multus.kubeconfig"}, True),
        ({"KUBECONFIG": "a\0b"}, False),
        ({"LD_PRELOAD": "/tmp/evil.so"}, False),
        ({"PATH": "/tmp"}, False),
        ({"CNI_COMMAND": "DEL"}, False),
    ],
)
def test_extra_env(extra: dict[str, str], ok: bool) -> None:
    if ok:
        assert validate_extra_env(extra) == extra
    else:
        with pytest.raises(Rejected):
            validate_extra_env(extra)


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("eth0", True),
        ("net1", True),
        ("x" * 15, True),
        ("x" * 16, False),
        ("", False),
        ("a/b", False),
        ("a b", False),
        ("a:1", False),
        ("..", False),
        ("\u00e9" * 7, True),  # 14 bytes
        ("\u00e9" * 8, False),  # 8 characters, 16 bytes: the kernel counts bytes
        ("eth0\n", False),
    ],
)
def test_interface_names(name: str, ok: bool) -> None:
    if ok:
        assert validate_ifname(name) == name
    else:
        with pytest.raises(Rejected):
            validate_ifname(name)


def test_environment_is_exactly_the_cni_variables() -> None:
    inv = Invocation("bridge", "/opt/cni/bin/bridge", "ADD", "cid", "/var/run/netns/p", "net1", "A=1", b"{}")
    assert cni_environment(inv, ("/opt/cni/bin", "/usr/lib/cni"), None) == {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "cid",
        "CNI_NETNS": "/var/run/netns/p",
        "CNI_IFNAME": "net1",
        "CNI_ARGS": "A=1",
        "CNI_PATH": "/opt/cni/bin:/usr/lib/cni",
        "PATH": MINIMAL_PATH,
    }
    with_kube = cni_environment(inv, ("/opt/cni/bin",), "/etc/cni/net.d/multus.d/multus.kubeconfig")
    assert with_kube["KUBECONFIG"] == "/etc/cni/net.d/multus.d/multus.kubeconfig"


@pytest.mark.parametrize(
    ("chroot_dir", "setpriv", "argv"),
    [
        ("", "", ["/opt/cni/bin/bridge"]),
        ("/hostroot", "", ["/usr/sbin/chroot", "/hostroot", "/opt/cni/bin/bridge"]),
        ("", "/usr/bin/setpriv", ["/usr/bin/setpriv", "--pdeathsig", "KILL", "--", "/opt/cni/bin/bridge"]),
        (
            "/hostroot",
            "/usr/bin/setpriv",
            ["/usr/bin/setpriv", "--pdeathsig", "KILL", "--", "/usr/sbin/chroot", "/hostroot", "/opt/cni/bin/bridge"],
        ),
    ],
)
def test_plugin_argv(chroot_dir: str, setpriv: str, argv: list[str]) -> None:
    assert plugin_argv("/opt/cni/bin/bridge", chroot_dir, "/usr/sbin/chroot" if chroot_dir else "", setpriv) == argv


@pytest.mark.parametrize(
    ("case", "exit_code", "stdout", "stderr", "expected"),
    [
        ("success", 0, b'{"cniVersion":"1.0.0"}', b"", None),
        ("success ignores stderr", 0, b"", b"warning", None),
        (
            "error object kept intact",
            1,
            b'{"cniVersion":"1.0.0","code":7,"msg":"bad config","details":"field x"}',
            b"",
            cni.CniError(7, "bad config", "field x"),
        ),
        ("plugin-specific code", 1, b'{"code":120,"msg":"vendor"}', b"", cni.CniError(120, "vendor", "")),
        ("missing code", 1, b'{"msg":"no code"}', b"", cni.CniError(5, "no code", "")),
        ("stderr only", 2, b"", b"panic: boom\n", cni.CniError(5, "netplugin failed: panic: boom", "exit status 2")),
        (
            "garbage stdout",
            1,
            b"not json",
            b"",
            cni.CniError(5, "netplugin failed with no error message", "exit status 1"),
        ),
        ("killed", -9, b"", b"", cni.CniError(5, "netplugin failed with no error message", "exit status -9")),
        (
            "secrets redacted",
            1,
            b'{"code":4,"msg":"auth failed","details":"Authorization: Bearer abc.def.ghi"}',
            b"",
            cni.CniError(4, "auth failed", "Authorization: Bearer [REDACTED]"),
        ),
    ],
)
def test_plugin_error(case: str, exit_code: int, stdout: bytes, stderr: bytes, expected: cni.CniError | None) -> None:
    assert plugin_error(exit_code, stdout, stderr) == expected, case


GATEWAY_UID, CACHE_UID, OPS_GID = 10001, 10002, 4242
ROOT = PeerCred(pid=1, uid=0, gid=0)
GATEWAY_PEER = PeerCred(pid=2, uid=GATEWAY_UID, gid=10000)
CACHE_PEER = PeerCred(pid=3, uid=CACHE_UID, gid=10000)
OPS_PEER = PeerCred(pid=4, uid=5000, gid=OPS_GID)


@pytest.mark.parametrize(
    ("case", "peer", "marker", "command", "allow", "ok"),
    [
        ("the gateway's uid with its marker", GATEWAY_PEER, "gateway", "ADD", False, True),
        ("the gateway's uid without the marker", GATEWAY_PEER, "", "ADD", False, False),
        ("the cache's uid sending the gateway's marker", CACHE_PEER, "gateway", "ADD", False, False),
        ("the cache's uid may ask VERSION", CACHE_PEER, "", "VERSION", False, True),
        ("root, operator exec off", ROOT, "", "DEL", False, False),
        ("root sending the marker is not the gateway's uid", ROOT, "gateway", "DEL", False, False),
        ("root, operator exec on (operator uid 0)", ROOT, "", "ADD", True, True),
        ("the operator gid, operator exec on", OPS_PEER, "", "ADD", True, True),
        ("the operator gid, operator exec off", OPS_PEER, "", "ADD", False, False),
        ("the cache's uid, operator exec on", CACHE_PEER, "", "ADD", True, False),
        ("unknown credentials (not through the front)", None, "gateway", "ADD", True, False),
    ],
)
def test_caller_policy(
    case: str, peer: PeerCred | None, marker: str, command: str, allow: bool, ok: bool
) -> None:
    policy = CallerPolicy(gateway_uid=GATEWAY_UID, allow_operator_exec=allow, operator_uid=0, operator_gid=OPS_GID)
    checks: list[Callable[[], None]] = [lambda: policy.check_exec(peer, marker, command)]
    if command != "VERSION":
        checks += [lambda: policy.check_delete(peer, marker), lambda: policy.check_route_change(peer, marker)]
    for check in checks:
        if ok:
            check()
        else:
            with pytest.raises(Rejected) as caught:
                check()
            assert caught.value.reason is Reason.DENIED, case


def test_all_root_keeps_the_marker_rule() -> None:
    """The default local supervisor runs everything as root: the marker tells the gateway from an operator."""
    policy = CallerPolicy()
    policy.check_exec(ROOT, "gateway", "ADD")
    with pytest.raises(Rejected):
        policy.check_exec(ROOT, "", "ADD")


def test_caller_marker() -> None:
    assert caller_from_metadata((("x-multus-pod", "ns/p"), ("x-multus-caller", "gateway"))) == "gateway"
    assert caller_from_metadata(None) == ""
