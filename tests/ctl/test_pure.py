"""Table tests for multusctl's pure parts and the dry run's explanations:
rendering, pod references, log parsing/merging, status problems and exit
codes, secret redaction, delegate origins, per-service log files."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from services.common.config import config_from_dict
from services.common.selection import parse_networks_annotation
from services.ctl import errors, logs, status
from services.ctl.errors import CtlError
from services.ctl.output import dump, duration, relative, table
from services.ctl.pods import parse_pod, pod_cni_args
from services.gateway.dry_run import _runtime_config
from services.gateway.explain import (
    REDACTED,
    delegate_origins,
    plugin_stdins,
    redact_config,
    selection_json,
)
from services.gateway.netconf import parse_netconf


def test_table_pads_columns_and_upper_cases_headers() -> None:
    assert table(["name", "value"], [["a", 1], ["longer", None]]).splitlines() == [
        "NAME     VALUE",
        "a        1",
        "longer",
    ]


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        ("none", "-"),
        (0, "0s"),
        (119, "119s"),
        (120, "2m"),
        (3599, "59m"),
        (3600, "1h"),
        (3 * 3600 + 20 * 60, "3h20m"),
        (12 * 3600 + 5 * 60, "12h"),
        (2 * 86400 + 4 * 3600, "2d4h"),
        (12 * 86400, "12d"),
        (-5, "0s"),
    ],
)
def test_duration_reads_like_kubectl_ages(seconds: Any, shown: str) -> None:
    assert duration(None if seconds == "none" else seconds) == shown


@pytest.mark.parametrize(("seconds", "shown"), [(300, "in 5m"), (-300, "5m ago"), (None, "-")])
def test_relative(seconds: float | None, shown: str) -> None:
    assert relative(seconds) == shown


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_dump_round_trips(fmt: str) -> None:
    doc = {"a": [1, {"b": None}], "c": "x"}
    text = dump(doc, fmt)
    assert (json.loads(text) if fmt == "json" else yaml.safe_load(text)) == doc


@pytest.mark.parametrize(
    ("text", "expected"),
    [("default/web", ("default", "web")), ("kube-system/coredns-1", ("kube-system", "coredns-1"))],
)
def test_parse_pod(text: str, expected: tuple[str, str]) -> None:
    assert parse_pod(text) == expected


@pytest.mark.parametrize("text", ["web", "/web", "default/", "a/b/c", ""])
def test_parse_pod_refuses_malformed_references(text: str) -> None:
    with pytest.raises(CtlError) as caught:
        parse_pod(text)
    assert caught.value.code == errors.USAGE


def test_pod_cni_args_as_the_runtime_sends_them() -> None:
    assert pod_cni_args("ns", "p", "cid", "uid") == (
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;K8S_POD_INFRA_CONTAINER_ID=cid;K8S_POD_UID=uid"
    )


# --- logs -----------------------------------------------------------------------------
def _line(ts: str, service: str, **fields: Any) -> str:
    return json.dumps({"timestamp": ts, "service": service, "level": "info", "event": "e", **fields})


@pytest.mark.parametrize(
    ("case", "text", "service"),
    [
        ("plain JSON", _line("2026-01-01T00:00:01.5Z", "gateway"), "gateway"),
        ("CRI container log", "2026-01-01T00:00:01.6Z stderr F " + _line("2026-01-01T00:00:01.5Z", "cache"), "cache"),
        (
            "service from the file when the line has none",
            '{"timestamp": "2026-01-01T00:00:01Z", "event": "x"}',
            "certs",
        ),
    ],
)
def test_parse_line(case: str, text: str, service: str) -> None:
    line = logs.parse_line(text, "certs")
    assert line is not None, case
    assert line.service == service and line.at.tzinfo is not None


@pytest.mark.parametrize(
    "text", ["Traceback (most recent call last):", "{not json", '{"event": "no timestamp"}', "[1, 2]", ""]
)
def test_parse_line_skips_what_is_not_a_structured_line(text: str) -> None:
    assert logs.parse_line(text, "gateway") is None


def _parsed(*texts: str) -> list[logs.LogLine]:
    return [line for t in texts if (line := logs.parse_line(t, "gateway")) is not None]


def test_select_merges_by_time_and_follows_a_pods_container_ids() -> None:
    lines = _parsed(
        _line("2026-01-01T00:00:03Z", "executor", container_id="abc123", event="delegate finished"),
        _line("2026-01-01T00:00:01Z", "gateway", container_id="abc123", pod="ns/p", event="cni ADD done"),
        _line("2026-01-01T00:00:02Z", "cache", pod="ns/other", container_id="zzz"),
        _line("2026-01-01T00:00:00Z", "gateway", event="unrelated"),
    )
    chosen = logs.select(lines, logs.LogQuery(pod="ns/p"))
    assert [(c.service, c.fields["event"]) for c in chosen] == [
        ("gateway", "cni ADD done"),
        ("executor", "delegate finished"),
    ]
    assert [c.service for c in logs.select(lines, logs.LogQuery(container_id="abc"))] == ["gateway", "executor"]
    assert [c.service for c in logs.select(lines, logs.LogQuery(pod="ns/p", services=("executor",)))] == ["executor"]
    since = datetime(2026, 1, 1, 0, 0, 2, tzinfo=UTC)
    assert [c.service for c in logs.select(lines, logs.LogQuery(pod="ns/p", since=since))] == ["executor"]


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("10m", 600), ("2h", 7200), ("1d", 86400)])
def test_parse_since(text: str, seconds: int) -> None:
    now = datetime(2026, 1, 2, tzinfo=UTC)
    assert logs.parse_since(text, now) == now - timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["10", "ten minutes", "5w", "-1m"])
def test_parse_since_refuses_other_text(text: str) -> None:
    with pytest.raises(CtlError):
        logs.parse_since(text, datetime.now(UTC))


def test_rotated_files_are_read_oldest_first(tmp_path: Any) -> None:
    base = tmp_path / "gateway.log"
    for name in ("gateway.log", "gateway.log.1", "gateway.log.2"):
        (tmp_path / name).write_text("")
    assert logs.rotated(str(base)) == [f"{base}.2", f"{base}.1", str(base)]
    assert logs.rotated(str(tmp_path / "absent.log")) == []


# --- per-service log files ------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "service", "path"),
    [
        ({}, "cache", ""),
        ({"logFile": "/var/log/multus.log"}, "gateway", "/var/log/multus.log"),
        ({"logFile": "/var/log/multus.log"}, "cache", ""),
        ({"logDir": "/var/log/multus"}, "cache", "/var/log/multus/cache.log"),
        ({"logDir": "/var/log/multus"}, "gateway", "/var/log/multus/gateway.log"),
        ({"logDir": "/var/log/multus", "logFile": "/x/gw.log"}, "gateway", "/x/gw.log"),
        ({"logDir": "/var/log/multus"}, "supervisor", "/var/log/multus/supervisor.log"),
    ],
)
def test_service_log_file(raw: dict[str, Any], service: str, path: str) -> None:
    assert config_from_dict(raw).service_log_file(service) == path


# --- status problems and exit codes ---------------------------------------------------
def _status_doc(**over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "services": [{"name": "gateway", "reachable": True, "health": "SERVING", "error": None}],
        "gateway": None,
        "cache": None,
        "executors": [],
        "certs": None,
        "spool": {"dir": "/run/multus/del-spool", "waiting": 0},
    }
    doc.update(over)
    return doc


_CERTS = {
    "credentials": [{"name": "delegate-token", "state": "EXPIRING", "lastError": "403 Forbidden"}],
    "missingPermissions": [
        {"verb": "create", "group": "", "resource": "events", "subresource": "", "namespace": "", "fix": "- rule"}
    ],
}


@pytest.mark.parametrize(
    ("case", "over", "messages", "code"),
    [
        ("healthy", {}, [], errors.OK),
        (
            "unreachable",
            {"services": [{"name": "cache", "reachable": False, "health": None, "error": "cache is down"}]},
            ["cache: cache is down"],
            errors.UNAVAILABLE,
        ),
        (
            "not serving",
            {"services": [{"name": "certs", "reachable": True, "health": "NOT_SERVING", "error": None}]},
            ["certs: health is NOT_SERVING (not ready)"],
            errors.FAILED,
        ),
        ("spooled DELs", {"spool": {"dir": "/d", "waiting": 2}}, ["gateway: 2 spooled DEL(s) waiting in /d"], 1),
        (
            "cache not synced",
            {"cache": {"kinds": [{"kind": "Pod", "synced": False}]}},
            ["cache: Pod not synced"],
            errors.FAILED,
        ),
        (
            "credential and RBAC",
            {"certs": _CERTS},
            [
                "certs: credential delegate-token is EXPIRING (last error: 403 Forbidden)",
                "certs: RBAC: missing create events (core)",
            ],
            errors.FAILED,
        ),
        (
            "executor saturated",
            {"executors": [{"problems": [], "queued": 3, "inFlight": 4, "maxConcurrency": 4}]},
            ["executor: saturated: 4/4 running, 3 queued"],
            errors.FAILED,
        ),
        (
            "Multus CNI config not ready",
            {
                "gateway": {
                    "multusConfig": {"ready": False, "reason": "no valid primary CNI config"},
                    "executors": 1,
                    "executorsConnected": 0,
                }
            },
            [
                "gateway: Multus CNI config not ready: no valid primary CNI config",
                "gateway: 0/1 executors connected",
            ],
            errors.FAILED,
        ),
    ],
)
def test_status_problems_decide_the_exit_code(case: str, over: dict[str, Any], messages: list[str], code: int) -> None:
    doc = _status_doc(**over)
    doc["problems"] = status.problems(doc)
    assert [f"{p['service']}: {p['message']}" for p in doc["problems"]] == messages, case
    assert status.exit_code(doc) == code


# --- the dry run's explanations -------------------------------------------------------
@pytest.mark.parametrize(
    ("case", "value", "expected"),
    [
        (
            "secret keys",
            {"password": "p", "apiKey": "k", "auth_token": "t"},
            dict.fromkeys(("password", "apiKey", "auth_token"), REDACTED),
        ),
        ("nested", {"ipam": {"etcd": {"client-key-data": "abc"}}}, {"ipam": {"etcd": {"client-key-data": REDACTED}}}),
        ("paths stay", {"kubeconfig": "/etc/k.conf", "tokenFile": ""}, {"kubeconfig": "/etc/k.conf", "tokenFile": ""}),
        ("bearer in text", {"args": ["Authorization: Bearer abc.def"]}, {"args": ["Authorization: Bearer [REDACTED]"]}),
        (
            "plain values",
            {"type": "bridge", "mtu": 1500, "isGateway": True},
            {"type": "bridge", "mtu": 1500, "isGateway": True},
        ),
    ],
)
def test_redact_config(case: str, value: Any, expected: Any) -> None:
    assert redact_config(value) == expected, case


def _netconf(**conf: Any) -> Any:
    return parse_netconf({"cniVersion": "1.0.0", **conf}, require_network=False)


@pytest.mark.parametrize(
    ("case", "conf", "pod_ns", "override", "annotation", "sources"),
    [
        ("cluster network only", {"clusterNetwork": "c"}, "default", "", "", ["clusterNetwork"]),
        (
            "defaults and annotation",
            {"clusterNetwork": "c", "defaultNetworks": ["d1", "d2"]},
            "default",
            "",
            "a,b",
            ["clusterNetwork", "defaultNetworks", "defaultNetworks", "networks-annotation", "networks-annotation"],
        ),
        (
            "system namespace skips defaults",
            {"clusterNetwork": "c", "defaultNetworks": ["d1"]},
            "kube-system",
            "",
            "a",
            ["clusterNetwork", "networks-annotation"],
        ),
        (
            "default-network annotation replaces the cluster network",
            {"clusterNetwork": "c", "defaultNetworks": ["d1"]},
            "default",
            "other",
            "",
            ["default-network-annotation", "defaultNetworks"],
        ),
        (
            "delegates list",
            {"delegates": [{"type": "bridge"}, {"type": "macvlan"}]},
            "default",
            "",
            "",
            ["delegates", "delegates"],
        ),
    ],
)
def test_delegate_origins_follow_the_resolvers_order(
    case: str, conf: dict[str, Any], pod_ns: str, override: str, annotation: str, sources: list[str]
) -> None:
    elements = parse_networks_annotation(annotation, pod_ns)
    origins = delegate_origins(_netconf(**conf), pod_ns, override, elements)
    assert [o.source for o in origins] == sources, case


@pytest.mark.parametrize(
    ("isolation", "reference", "rule"),
    [
        (False, "default/n", "the pod's own namespace"),
        (True, "default/n", "the pod's own namespace"),
        (False, "other/n", "namespace 'other' (namespaceIsolation is off)"),
        (True, "global/n", "global namespace 'global' (namespaceIsolation allows globalNamespaces)"),
    ],
)
def test_annotation_origins_name_the_namespace_rule(isolation: bool, reference: str, rule: str) -> None:
    netconf = _netconf(clusterNetwork="c", namespaceIsolation=isolation, globalNamespaces=["global"])
    (element,) = parse_networks_annotation(reference, "default")
    origin = delegate_origins(netconf, "default", "", [element])[-1]
    assert origin.reason.endswith(rule)
    assert origin.selection == {"name": "n", "namespace": reference.split("/")[0]}


def test_selection_json_uses_upstreams_keys() -> None:
    text = '[{"name": "n", "interface": "data0", "ips": ["10.0.0.2/24"], "default-route": [], "cni-args": {"a": 1}}]'
    (element,) = parse_networks_annotation(text, "ns")
    assert selection_json(element) == {
        "name": "n",
        "namespace": "ns",
        "interface": "data0",
        "ips": ["10.0.0.2/24"],
        "cni-args": {"a": 1},
        "default-route": [],
    }


def test_plugin_stdins_as_the_invoker_builds_them() -> None:
    conflist = {
        "cniVersion": "1.0.0",
        "name": "net",
        "plugins": [
            {"type": "bridge", "capabilities": {"ips": True}, "token": "s3cret"},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    stdins = plugin_stdins(conflist, {"ips": ["10.0.0.2/24"], "portMappings": [{"hostPort": 80}]})
    assert [(s.type, s.gets_prev_result) for s in stdins] == [("bridge", False), ("portmap", True)]
    assert stdins[0].stdin == {
        "type": "bridge",
        "capabilities": {"ips": True},
        "token": REDACTED,
        "name": "net",
        "cniVersion": "1.0.0",
        "runtimeConfig": {"ips": ["10.0.0.2/24"]},
    }
    assert stdins[1].stdin["runtimeConfig"] == {"portMappings": [{"hostPort": 80}]}


@pytest.mark.parametrize(
    ("case", "content", "expected"),
    [
        ("a conf as is", {"cniVersion": "1.0.0", "name": "m", "type": "multus-shim"}, {"type": "multus-shim"}),
        (
            "a conflist's first plugin with the list's name and version",
            {"cniVersion": "0.4.0", "name": "m", "plugins": [{"type": "multus-shim"}, {"type": "tuning"}]},
            {"type": "multus-shim", "name": "m", "cniVersion": "0.4.0"},
        ),
    ],
)
def test_runtime_config_of_the_multus_config_file(case: str, content: dict[str, Any], expected: Any) -> None:
    got = json.loads(_runtime_config(json.dumps(content).encode(), "/x"))
    assert {k: got[k] for k in expected} == expected, case
