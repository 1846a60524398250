"""Pure parts of the config manager: primary selection, 00-multus.conf rendering, plans."""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.common.config import config_from_dict
from services.gateway.config_manager import AUTO, MANUAL, Observation, plan, target_path
from services.gateway.multus_conf import (
    ConfigFile,
    PrimaryNetwork,
    capabilities_of,
    is_generated_multus_conf,
    multus_conf,
    render_multus_conf,
    select_primary,
    shim_socket_dir,
)

FLANNEL = {
    "name": "cbr0",
    "cniVersion": "0.3.1",
    "plugins": [
        {"type": "flannel", "delegate": {"hairpinMode": True, "isDefaultGateway": True}},
        {"type": "portmap", "capabilities": {"portMappings": True}},
    ],
}
BRIDGE_CONF = {"cniVersion": "1.0.0", "name": "br", "type": "bridge", "ipam": {"type": "host-local"}}


def _file(name: str, obj: Any) -> ConfigFile:
    return ConfigFile(name, obj if isinstance(obj, bytes) else json.dumps(obj).encode())


# --- select_primary -----------------------------------------------------------------------------

SELECT_CASES = [
    (
        "lexically first wins",
        [_file("20-b.conf", BRIDGE_CONF), _file("10-a.conflist", FLANNEL)],
        {},
        "10-a.conflist",
        [],
    ),
    (
        "our own output is skipped silently, other 00-multus* files with a reason",
        [
            _file("00-multus.conf", {"type": "multus-shim", "name": "m"}),
            _file("00-multus-old.conflist", FLANNEL),
            _file("10-a.conflist", FLANNEL),
        ],
        {},
        "10-a.conflist",
        [("00-multus-old.conflist", "ignores every 00-multus* file")],
    ),
    (
        "a multus-typed config under another name is skipped",
        [_file("01-old.conf", {"cniVersion": "0.3.1", "type": "multus", "name": "x"}), _file("10-a.conf", BRIDGE_CONF)],
        {},
        "10-a.conf",
        [("01-old.conf", "Multus config (type multus)")],
    ),
    (
        "invalid JSON is skipped with a reason",
        [_file("05-bad.conf", b"{not json"), _file("10-a.conf", BRIDGE_CONF)],
        {},
        "10-a.conf",
        [("05-bad.conf", "not valid JSON")],
    ),
    (
        "conflist without plugins is skipped",
        [
            _file("05-empty.conflist", {"name": "e", "cniVersion": "1.0.0", "plugins": []}),
            _file("10-a.conf", BRIDGE_CONF),
        ],
        {},
        "10-a.conf",
        [("05-empty.conflist", "conflist has no plugins")],
    ),
    (
        "conf without type is skipped",
        [_file("05-notype.conf", {"name": "n", "cniVersion": "1.0.0"}), _file("10-a.conf", BRIDGE_CONF)],
        {},
        "10-a.conf",
        [("05-notype.conf", "conf has no type")],
    ),
    (
        "unreadable file is skipped",
        [ConfigFile("05-secret.conf", None, "Permission denied"), _file("10-a.conf", BRIDGE_CONF)],
        {},
        "10-a.conf",
        [("05-secret.conf", "unreadable: Permission denied")],
    ),
    (
        "other extensions and hidden temp files are ignored",
        [_file("05-a.json", BRIDGE_CONF), _file(".00-multus.conf.x1y2", BRIDGE_CONF), _file("10-a.conf", BRIDGE_CONF)],
        {},
        "10-a.conf",
        [],
    ),
    (
        "pre-0.4.0 delegate under a 0.4.0+ multus is incompatible",
        [_file("05-old.conf", {**BRIDGE_CONF, "cniVersion": "0.3.1"}), _file("10-a.conf", BRIDGE_CONF)],
        {"multus_cni_version": "1.0.0"},
        "10-a.conf",
        [("05-old.conf", "delegate cni version is 0.3.1 while top level cni version is 1.0.0")],
    ),
    (
        "forceCNIVersion accepts any delegate version",
        [_file("05-old.conf", {**BRIDGE_CONF, "cniVersion": "0.3.1"})],
        {"multus_cni_version": "1.0.0", "force_cni_version": True},
        "05-old.conf",
        [],
    ),
    (
        "multusMasterCNI pins the primary",
        [_file("05-a.conf", BRIDGE_CONF), _file("10-b.conflist", FLANNEL)],
        {"master_file_name": "10-b.conflist"},
        "10-b.conflist",
        [],
    ),
    ("nothing valid", [_file("05-bad.conf", b"[]")], {}, None, [("05-bad.conf", "not a JSON object")]),
]


@pytest.mark.parametrize(
    ("case", "files", "kwargs", "winner", "skipped"), SELECT_CASES, ids=[c[0] for c in SELECT_CASES]
)
def test_select_primary(
    case: str, files: list[ConfigFile], kwargs: dict[str, Any], winner: str | None, skipped: list[tuple[str, str]]
) -> None:
    selection = select_primary(files, "/etc/cni/net.d/", **kwargs)
    if winner is None:
        assert selection.primary is None
    else:
        assert selection.primary is not None
        assert selection.primary.path == f"/etc/cni/net.d/{winner}"
    assert [s.name for s in selection.skipped] == [name for name, _ in skipped]
    for got, (_, reason) in zip(selection.skipped, skipped, strict=True):
        assert reason in got.reason


CAPABILITY_CASES = [
    ("conflist union", FLANNEL, {"portMappings": True}),
    (
        "several plugins",
        {
            "plugins": [
                {"type": "a", "capabilities": {"ips": True, "mac": False}},
                {"type": "b", "capabilities": {"bandwidth": True}},
            ]
        },
        {"ips": True, "bandwidth": True},
    ),
    ("single conf", {"type": "a", "capabilities": {"portMappings": True}}, {"portMappings": True}),
    ("non-bool values ignored", {"type": "a", "capabilities": {"x": "yes"}}, {}),
    ("none", BRIDGE_CONF, {}),
]


@pytest.mark.parametrize(("case", "config", "expected"), CAPABILITY_CASES, ids=[c[0] for c in CAPABILITY_CASES])
def test_capabilities_of(case: str, config: dict[str, Any], expected: dict[str, bool]) -> None:
    assert capabilities_of(config) == expected


# --- rendering: byte-identical to upstream's Go json.Marshal of MultusConf -----------------------

UPSTREAM_THICK_DAEMON_CONFIG = {  # deployments/multus-daemonset-thick.yml
    "chrootDir": "/hostroot",
    "cniVersion": "0.3.1",
    "logLevel": "verbose",
    "logToStderr": True,
    "cniConfigDir": "/host/etc/cni/net.d",
    "multusAutoconfigDir": "/host/etc/cni/net.d",
    "multusConfigFile": "auto",
    "socketDir": "/host/run/multus/",
}
FLANNEL_PRIMARY = PrimaryNetwork("/host/etc/cni/net.d/10-flannel.conflist", FLANNEL)

RENDER_CASES = [
    (
        "upstream thick quickstart",
        UPSTREAM_THICK_DAEMON_CONFIG,
        FLANNEL_PRIMARY,
        '{"capabilities":{"portMappings":true},"cniVersion":"0.3.1","logLevel":"verbose","logToStderr":true,'
        '"name":"multus-cni-network","clusterNetwork":"/host/etc/cni/net.d/10-flannel.conflist","type":"multus-shim"}',
    ),
    (
        "every copied key in struct order; flushed keys dropped",
        {
            "overrideNetworkName": False,
            "daemonSocketDir": "/run/multus/",
            "auxiliaryCNIChainName": "aux",
            "cniDir": "/var/lib/cni/multus",
            "globalNamespaces": ["default", "shared"],
            "namespaceIsolation": True,
            "logOptions": {"maxAge": 5, "maxSize": 100, "compress": True, "other": 1},
            "logFile": "/var/log/multus.log",
            "capabilities": {"ips": True},
            "binDir": "/opt/cni/bin",
            "cniVersion": "1.0.0",
            "readinessindicatorfile": "/run/flannel/subnet.env",
            "forceCNIVersion": True,
            "multusMasterCNI": "10-flannel.conflist",
            "type": "something-else",
            "name": "ignored",
        },
        FLANNEL_PRIMARY,
        '{"binDir":"/opt/cni/bin","capabilities":{"ips":true,"portMappings":true},"cniVersion":"1.0.0",'
        '"logFile":"/var/log/multus.log","logOptions":{"maxAge":5,"maxSize":100,"compress":true},'
        '"name":"multus-cni-network","clusterNetwork":"/host/etc/cni/net.d/10-flannel.conflist",'
        '"namespaceIsolation":true,"globalNamespaces":"default,shared","type":"multus-shim",'
        '"cniDir":"/var/lib/cni/multus","auxiliaryCNIChainName":"aux","daemonSocketDir":"/run/multus/"}',
    ),
    (
        "overrideNetworkName takes the primary's name; keys match case-insensitively",
        {"CNIVersion": "0.3.1", "overrideNetworkName": True, "LogLevel": "debug"},
        FLANNEL_PRIMARY,
        '{"capabilities":{"portMappings":true},"cniVersion":"0.3.1","logLevel":"debug","name":"cbr0",'
        '"clusterNetwork":"/host/etc/cni/net.d/10-flannel.conflist","type":"multus-shim","overrideNetworkName":true}',
    ),
    (
        "no cniVersion: the primary's; HTML characters escaped as Go does",
        {"logFile": "/var/log/a<b>&c"},
        PrimaryNetwork("/etc/cni/net.d/10-br.conf", BRIDGE_CONF),
        '{"cniVersion":"1.0.0","logFile":"/var/log/a\\u003cb\\u003e\\u0026c","name":"multus-cni-network",'
        '"clusterNetwork":"/etc/cni/net.d/10-br.conf","type":"multus-shim"}',
    ),
]


@pytest.mark.parametrize(("case", "daemon", "primary", "expected"), RENDER_CASES, ids=[c[0] for c in RENDER_CASES])
def test_render_matches_upstream_bytes(
    case: str, daemon: dict[str, Any], primary: PrimaryNetwork, expected: str
) -> None:
    rendered = render_multus_conf(daemon, primary)
    assert rendered == expected.encode()
    assert is_generated_multus_conf(rendered)


SOCKET_DIR_CASES = [
    ("upstream quickstart: /host/run/multus/ is the host's default", {}, "/host/run/multus/", None),
    ("default socket dir needs no key", {}, "/run/multus", None),
    ("local run: the gateway's socket dir", {}, "/tmp/x/sock", "/tmp/x/sock"),
    ("other /host mount", {}, "/host/var/run/multus/", "/var/run/multus/"),
    ("explicit daemonSocketDir is copied verbatim", {"daemonSocketDir": "/run/multus/"}, "/x", "/run/multus/"),
]


@pytest.mark.parametrize(
    ("case", "daemon", "socket_dir", "expected"), SOCKET_DIR_CASES, ids=[c[0] for c in SOCKET_DIR_CASES]
)
def test_shim_socket_dir(case: str, daemon: dict[str, Any], socket_dir: str, expected: str | None) -> None:
    assert shim_socket_dir(daemon, socket_dir) == expected
    conf = multus_conf(daemon, FLANNEL_PRIMARY, socket_dir)
    assert conf.get("daemonSocketDir") == expected


def test_upstream_quickstart_with_its_socket_dir_is_byte_identical() -> None:
    cfg = config_from_dict(UPSTREAM_THICK_DAEMON_CONFIG)
    assert render_multus_conf(cfg.raw, FLANNEL_PRIMARY, cfg.socket_dir) == RENDER_CASES[0][3].encode()


def test_generated_detection() -> None:
    assert not is_generated_multus_conf(json.dumps(BRIDGE_CONF).encode())
    assert not is_generated_multus_conf(b"garbage")


# --- plans ----------------------------------------------------------------------------------------


def _config(**raw: Any) -> Any:
    base = {"cniVersion": "1.0.0", "cniConfigDir": "/etc/cni/net.d"}
    return config_from_dict({**base, **raw})


def test_plan_auto_writes_only_on_change() -> None:
    cfg = _config()
    files = (_file("10-br.conf", BRIDGE_CONF),)
    first = plan(cfg, Observation(files=files))
    assert first.state.ready and first.state.mode == AUTO and first.write is not None
    assert first.state.path == "/etc/cni/net.d/00-multus.conf" == target_path(cfg)
    again = plan(cfg, Observation(files=files, current=first.write))
    assert again.state.ready and again.write is None


def test_plan_auto_keeps_file_without_primary() -> None:
    result = plan(_config(), Observation(files=(_file("05-bad.conf", b"{"),), current=b"old"))
    assert not result.state.ready and result.write is None
    assert "no valid primary CNI config" in result.state.reason
    assert [s.name for s in result.skipped] == ["05-bad.conf"]


def test_plan_waits_for_readiness_indicator() -> None:
    cfg = _config(readinessindicatorfile="/run/flannel/subnet.env")
    result = plan(cfg, Observation(indicator_present=False, files=(_file("10-br.conf", BRIDGE_CONF),)))
    assert not result.state.ready and result.write is None
    assert "readinessindicatorfile /run/flannel/subnet.env" in result.state.reason


MANUAL_CASES = [
    ("installs the given file", Observation(source=b'{"type":"multus-shim"}'), True, b'{"type":"multus-shim"}'),
    (
        "already installed",
        Observation(source=b'{"type":"multus-shim"}', current=b'{"type":"multus-shim"}'),
        True,
        None,
    ),
    ("missing source", Observation(source_error="No such file or directory"), False, None),
    ("invalid JSON is not installed", Observation(source=b"{nope"), False, None),
    ("not an object", Observation(source=b"[1]"), False, None),
]


@pytest.mark.parametrize(("case", "seen", "ready", "write"), MANUAL_CASES, ids=[c[0] for c in MANUAL_CASES])
def test_plan_manual(case: str, seen: Observation, ready: bool, write: bytes | None) -> None:
    cfg = _config(multusConfigFile="/etc/multus/70-multus.conf")
    result = plan(cfg, seen)
    assert result.state.mode == MANUAL and result.state.path == "/etc/cni/net.d/70-multus.conf"
    assert result.state.ready is ready
    assert result.write == write
