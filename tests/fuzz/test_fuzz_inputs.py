"""Hypothesis fuzzing of everything a runtime, a pod author or an operator hands
us as text: the shim (env and stdin, against a daemon answering anything), the
gateway's HTTP body (through the real dispatcher and CNI logic over in-memory
fakes), the networks annotation, the daemon config and NAD configs. Expected
every time: a CNI error with a code (never a traceback or another exception),
nothing written outside the records directory, nothing run for a request
that is refused. Bounded in count (`FUZZ_EXAMPLES`); the inputs tried per
target go to the fault report (docs/reliability.md)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.common import cni
from services.common.config import ConfigError, config_from_dict
from services.common.logs import setup_logging
from services.common.selection import parse_networks_annotation
from services.common.validation import container_id_problem
from services.gateway.delegate import load_delegate
from services.gateway.request import CniRequest, decode_request_body, validate_call
from shim import multus_shim
from tests.gateway.fakes import make_node, plugin_conf
from tests.shim.fake_daemon import Answer, FakeDaemon
from tests.support import fault_report
from tests.support.log_scan import PLANTED_SECRETS
from tests.support.logging_state import restored_logging

pytestmark = pytest.mark.faults

FUZZ_EXAMPLES = int(os.environ.get("MULTUS_FUZZ_EXAMPLES", "500"))
FUZZ = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

VERBS = ["ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION", "add", "Del", "", "ADD\x00", " ADD", "DELETE"]
NASTY = [
    "../../etc/passwd",
    "/bin/sh",
    "..",
    ".",
    "a/../../b",
    "bridge\x00/evil",
    "x" * 300,
    "/proc/self/ns/net",
    "/proc/1/ns/net",
    "/var/run/netns/../../proc/1/ns/net",
    "//proc//1//ns//net",
    "/proc/thread-self/ns/net",
    "\ud800",
    "☃",
    "LD_PRELOAD=/tmp/evil.so",
    f"token={PLANTED_SECRETS[0]}",
    f"Authorization: Basic {PLANTED_SECRETS[1]}",
]
text = st.one_of(st.sampled_from(NASTY), st.text(max_size=64))
json_scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), text)
json_value = st.recursive(
    json_scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(text, inner, max_size=4)),
    max_leaves=12,
)


def cni_env() -> st.SearchStrategy[dict[str, str]]:
    fields = {
        "CNI_COMMAND": st.sampled_from(VERBS),
        "CNI_CONTAINERID": st.one_of(st.sampled_from(["c1", "abc-123", ""]), text),
        "CNI_NETNS": st.one_of(st.sampled_from(["/var/run/netns/x", ""]), text),
        "CNI_IFNAME": st.one_of(st.sampled_from(["eth0", "net1", ""]), text),
        "CNI_ARGS": st.one_of(
            st.just("K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_UID=uid-1"),
            text,
        ),
        "CNI_PATH": text,
    }
    return st.fixed_dictionaries({}, optional=fields).flatmap(
        lambda env: st.dictionaries(text, text, max_size=3).map(lambda extra: {**extra, **env})
    )


def count(target: str) -> None:
    fault_report.add("fuzz inputs", target, 1)


# --- the shim -------------------------------------------------------------------------
SHIM_CODES_OK = {0, 1}


def test_fuzz_shim_env_and_stdin() -> None:
    with tempfile.TemporaryDirectory(prefix="fuzz-shim-") as tmp, FakeDaemon(Path(tmp), flavour="ours") as daemon:

        @FUZZ
        @given(
            env=cni_env(),
            config=st.one_of(st.dictionaries(text, json_value, max_size=5), json_value),
            raw=st.one_of(st.none(), st.binary(max_size=256)),
            version=st.sampled_from(["1.0.0", "0.4.0", "0.3.1", "0.2.0", "1.1.0", "9.9.9", ""]),
            answer_status=st.sampled_from([200, 400, 500, 503]),
            answer_body=st.one_of(st.binary(max_size=200), json_value.map(lambda v: json.dumps(v).encode())),
        )
        def run(
            env: dict[str, str],
            config: Any,
            raw: bytes | None,
            version: str,
            answer_status: int,
            answer_body: bytes,
        ) -> None:
            count("shim (env, stdin)")
            daemon.cni_answers = [Answer(answer_status, answer_body)]
            if raw is None:
                conf = dict(config) if isinstance(config, dict) else {}
                conf.update({"cniVersion": version, "daemonSocketDir": tmp})  # never spool outside tmp
                stdin = json.dumps(conf).encode()
            else:
                stdin = raw
            env = {**env, multus_shim.READY_TIMEOUT_ENV: "0.2", multus_shim.DEL_TIMEOUT_ENV: "0.2"}
            status, out = multus_shim.run(env, stdin)
            assert status in SHIM_CODES_OK
            if out:
                answer = json.loads(out)
                if status == 1:
                    assert isinstance(answer.get("code"), int) and answer.get("msg"), answer
            spooled = Path(tmp) / multus_shim.SPOOL_DIR_NAME
            if spooled.exists():  # a DEL the daemon did not take: in its spool, nowhere else
                assert all(p.suffix == ".json" or p.name.startswith(".") for p in spooled.iterdir())

        run()


# --- the gateway's HTTP body, through the dispatcher -------------------------------------
def body_strategy() -> st.SearchStrategy[bytes]:
    structured = st.fixed_dictionaries(
        {},
        optional={
            "env": st.one_of(cni_env(), json_value),
            "config": st.one_of(
                json_value.map(lambda v: base64.b64encode(json.dumps(v).encode()).decode()),
                text,
                json_value,
            ),
            "interfaceAttributes": json_value,
            "Env": cni_env(),
        },
    ).map(lambda obj: json.dumps(obj).encode())
    return st.one_of(structured, st.binary(max_size=300), json_value.map(lambda v: json.dumps(v).encode()))


@pytest.fixture
def gateway_log(tmp_path: Path) -> Iterator[Path]:
    """Log as the services do (redaction included) into a file the suite scans."""
    path = tmp_path / "logs" / "gateway.log"
    with restored_logging():
        setup_logging("gateway", "debug", str(path), to_stderr=False)
        yield path


def test_fuzz_gateway_http_body(tmp_path: Path, gateway_log: Path) -> None:
    root = tmp_path / "node"
    node = make_node(root)
    node.cluster.add_nad("net-a", plugin_conf("net-a"))
    node.cluster.add_pod("web", "net-a")

    @FUZZ
    @given(body=body_strategy(), delegate=st.booleans())
    def run(body: bytes, delegate: bool) -> None:
        count("gateway HTTP body")

        async def call() -> None:
            try:
                request = decode_request_body(body)
                await (node.dispatcher.delegate if delegate else node.dispatcher.cni)(request)
            except cni.CniError as err:
                assert isinstance(err.code, int) and err.code != cni.INTERNAL, (err.code, err.msg, err.details)

        asyncio.run(call())
        for call_ in node.runner.calls:
            assert not container_id_problem(call_.container_id) or call_.command in ("STATUS", "GC", "VERSION")
        records = root / "records"
        if records.exists():
            assert all(not container_id_problem(p.name) for p in records.iterdir())
        assert {p.name for p in root.iterdir()} <= {"net.d", "records", "devinfo", "run", "cnidir", "multus.d"}

    run()


def test_fuzz_validate_call_direct() -> None:
    @FUZZ
    @given(env=cni_env(), config=st.binary(max_size=64))
    def run(env: dict[str, str], config: bytes) -> None:
        count("CNI env (validate_call)")
        try:
            call = validate_call(CniRequest(env, config))
        except cni.CniError as err:
            assert err.code in (cni.INVALID_ENV, cni.DECODE_FAILURE, cni.INVALID_CONFIG), err
            return
        assert call.command in ("ADD", "DEL", "CHECK", "STATUS", "GC")
        if call.command in ("ADD", "DEL", "CHECK"):
            assert not container_id_problem(call.container_id)
            assert "/" not in call.ifname and call.ifname not in (".", "..")

    run()


# --- annotations, daemon config, NAD configs ---------------------------------------------
def test_fuzz_networks_annotation() -> None:
    items = st.one_of(
        text,
        st.lists(
            st.one_of(text, st.dictionaries(st.sampled_from(["name", "namespace", "interface", "ips", "mac",
                                                             "default-route", "cni-args", "portMappings"]) | text,
                                            json_value, max_size=5)),
            max_size=4,
        ).map(json.dumps),
    )

    @FUZZ
    @given(annotation=items, namespace=st.sampled_from(["default", "kube-system", ""]))
    def run(annotation: str, namespace: str) -> None:
        count("networks annotation")
        try:
            elements = parse_networks_annotation(annotation, namespace)
        except cni.CniError as err:
            assert err.code == cni.INVALID_CONFIG, err
            return
        for element in elements:
            assert element.name and "/" not in element.name

    run()


def test_fuzz_daemon_config() -> None:
    keys = st.sampled_from(
        ["cniVersion", "socketDir", "runDir", "binDir", "metricsPort", "servicePorts", "perNodeCertificate",
         "systemNamespaces", "executorTimeoutSeconds", "cniCallTimeoutSeconds", "spoolMaxEntries", "logOptions",
         "namespaceIsolation", "gatewayUid", "executorSockets", "logLevel", "readinessindicatorfile"]
    ) | text

    @FUZZ
    @given(raw=st.dictionaries(keys, json_value, max_size=6))
    def run(raw: dict[str, Any]) -> None:
        count("daemon config")
        with contextlib.suppress(ConfigError):
            config_from_dict(raw)

    run()


def test_fuzz_nad_configs_through_add(tmp_path: Path, gateway_log: Path) -> None:
    node = make_node(tmp_path / "node")

    @FUZZ
    @given(
        config=st.one_of(
            st.dictionaries(
                st.sampled_from(["cniVersion", "name", "type", "plugins", "ipam", "master", "capabilities"]) | text,
                json_value,
                max_size=6,
            ).map(json.dumps),
            text,
        )
    )
    def run(config: str) -> None:
        count("NAD config")
        try:
            load_delegate(config)
        except cni.CniError as err:
            assert err.code in (cni.INVALID_CONFIG, cni.DECODE_FAILURE, cni.INCOMPATIBLE_VERSION), err
        node.cluster.add_nad("fuzzed", config)
        node.cluster.add_pod("web", "fuzzed")

        async def add_and_del() -> None:
            try:
                await node.cni("ADD")
            except cni.CniError as err:
                assert err.code != cni.INTERNAL, (err.msg, err.details)
            await node.cni("DEL")

        asyncio.run(add_and_del())
        assert node.records.load("c1") == []  # nothing left behind, whatever the config

    run()
