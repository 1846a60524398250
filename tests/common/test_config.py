"""Table tests for daemon-config parsing (upstream key names and meanings)."""

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from services.common.config import ConfigError, DaemonConfig, config_from_dict, load_config
from services.common.credentials import api_credentials
from tests.support.services import REPO

CASES: list[tuple[str, dict[str, Any], str, Any]] = [
    ("defaults socket dir as upstream", {}, "socket_dir", "/run/multus/"),
    ("defaults cniDir as upstream", {}, "cni_dir", "/var/lib/cni/multus"),
    ("defaults confDir as upstream", {}, "conf_dir", "/etc/cni/multus/net.d"),
    ("defaults systemNamespaces", {}, "system_namespaces", ("kube-system",)),
    ("readinessindicatorfile lower-case key", {"readinessindicatorfile": "/r"}, "readiness_indicator_file", "/r"),
    ("daemonSocketDir alias", {"daemonSocketDir": "/s/"}, "socket_dir", "/s/"),
    ("forceCNIVersion", {"forceCNIVersion": True}, "force_cni_version", True),
    ("globalNamespaces comma string", {"globalNamespaces": "a, b"}, "global_namespaces", ("a", "b")),
    ("defaultNetworks list", {"defaultNetworks": ["x", "y"]}, "default_networks", ("x", "y")),
    ("metricsPort", {"metricsPort": 9091}, "metrics_port", 9091),
    ("metricsPort absent means off", {}, "metrics_port", None),
    ("autoconfig dir falls back to cniConfigDir", {"cniConfigDir": "/c"}, "autoconfig_dir", "/c"),
    ("explicit autoconfig dir", {"cniConfigDir": "/c", "multusAutoconfigDir": "/a"}, "autoconfig_dir", "/a"),
    ("socket path", {"socketDir": "/s"}, "daemon_socket_path", "/s/multus.sock"),
    ("bin dirs list", {"binDir": "/a:/b"}, "bin_dirs", ("/a", "/b")),
    ("unknown keys kept raw", {"somethingNew": 1}, "raw", {"somethingNew": 1}),
]


@pytest.mark.parametrize(("case", "raw", "attr", "expected"), CASES, ids=[c[0] for c in CASES])
def test_config_keys(case: str, raw: dict[str, Any], attr: str, expected: Any) -> None:
    assert getattr(config_from_dict(raw), attr) == expected


BAD = [
    ("string where bool", {"namespaceIsolation": "yes"}),
    ("number where string", {"binDir": 5}),
    ("list of numbers", {"defaultNetworks": [1]}),
    ("perNodeCertificate not object", {"perNodeCertificate": True}),
]


@pytest.mark.parametrize(("case", "raw"), BAD, ids=[c[0] for c in BAD])
def test_bad_values_raise_config_error(case: str, raw: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        config_from_dict(raw)


def test_flags_override_file(tmp_path: Path) -> None:
    path = tmp_path / "daemon-config.json"
    path.write_text('{"socketDir": "/from/file/", "logLevel": "debug"}')
    cfg = load_config(path, {"socketDir": "/from/flag/"})
    assert (cfg.socket_dir, cfg.log_level) == ("/from/flag/", "debug")


def test_malformed_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "daemon-config.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError):
        load_config(path)


@pytest.mark.parametrize("service", ["gateway", "cache", "executor", "certs", "supervisor", "probe"])
def test_a_named_config_file_that_is_missing_stops_the_service(tmp_path: Path, service: str) -> None:
    """Each entry point given --config that does not exist exits 2 naming the file,
    instead of starting on defaults nobody chose."""
    missing = tmp_path / "nope" / "daemon-config.json"
    module = {"supervisor": "compose.supervisor", "probe": "services.common.probe"}.get(service, f"services.{service}")
    extra = ["--service", "gateway"] if service == "probe" else []
    result = subprocess.run(
        [sys.executable, "-m", module, "--config", str(missing), *extra],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert f"daemon config {missing} does not exist" in result.stderr


def test_the_default_config_path_may_be_absent(tmp_path: Path) -> None:
    assert load_config(tmp_path / "absent.json").socket_dir == DaemonConfig().socket_dir


def test_grpc_sockets_live_under_run_dir() -> None:
    cfg = DaemonConfig(run_dir="/r")
    assert cfg.grpc_socket("cache") == "/r/grpc/cache.sock"


CREDENTIAL_CASES: list[tuple[str, dict[str, Any], dict[str, str], tuple[str, str]]] = [
    (
        "per-node certificate wins",
        {"perNodeCertificate": {"enabled": True, "certDir": "/c"}},
        {"KUBECONFIG": "/k"},
        ("per-node-certificate", "/c/multus-client.kubeconfig"),
    ),
    ("KUBECONFIG env", {"kubeconfig": "/file"}, {"KUBECONFIG": "/env"}, ("kubeconfig", "/env")),
    ("daemon-config kubeconfig", {"kubeconfig": "/file"}, {}, ("kubeconfig", "/file")),
    ("in-cluster last", {}, {}, ("in-cluster", "")),
]


@pytest.mark.parametrize(
    ("case", "raw", "env", "expected"), CREDENTIAL_CASES, ids=[c[0] for c in CREDENTIAL_CASES]
)
def test_api_credentials_order(case: str, raw: dict[str, Any], env: dict[str, str], expected: tuple[str, str]) -> None:
    creds = api_credentials(config_from_dict(raw), env)
    assert (creds.kind, creds.kubeconfig) == expected


@pytest.mark.parametrize(
    "raw",
    [
        {"cniCallTimeoutSeconds": 0},
        {"cniCallTimeoutSeconds": 105},
        {"spoolMaxEntries": 0},
        {"spoolRetryMaxSeconds": -1},
    ],
    ids=lambda r: next(iter(r)),
)
def test_bounds_that_would_break_a_promise_are_refused(raw: dict[str, Any]) -> None:
    """A whole-call deadline at or above the shim's 110 s wait would let the shim give up first."""
    with pytest.raises(ConfigError):
        config_from_dict(raw)


@pytest.mark.parametrize(
    "raw",
    [
        {"metricsPort": []},
        {"metricsPort": "../../etc/passwd"},
        {"servicePorts": {"gateway": {"healthPort": "x"}}},
        {"servicePorts": {"gateway": {"healthPort": []}}},
    ],
    ids=str,
)
def test_a_value_of_the_wrong_shape_is_a_config_error(raw: dict[str, Any]) -> None:
    """Found by the fuzz suite: these were a bare ValueError/TypeError (a traceback at start)."""
    with pytest.raises(ConfigError):
        config_from_dict(raw)
