"""Bad input at the gateway's wire edge: whatever a client posts (upstream's
shim, ours, a hot-plug tool, the gRPC API), the answer is a CNI error object
with the right code, never a plain-text 413/500, a crashed call (code 5) or a
file written outside the records directory."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from services.common import cni
from services.common.logs import bound_context, context_metadata
from services.gateway.request import CniRequest, decode_request_body, validate_call
from tests.gateway.conftest import http_call, new_container_id
from tests.gateway.test_lifecycle import _setup, _sock
from tests.support.netns import netns
from tests.support.services import running_services

ARGS = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=p;K8S_POD_UID=u-1"
SHIM_CONF = base64.b64encode(b'{"cniVersion":"1.0.0","name":"multus-cni-network","type":"multus-shim"}').decode()
DEEP = b"[" * 100_000 + b"]" * 100_000


def _env(command: str = "ADD", **overrides: str) -> dict[str, str]:
    env = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": "c1",
        "CNI_NETNS": "/var/run/netns/x",
        "CNI_IFNAME": "eth0",
        "CNI_ARGS": ARGS,
    }
    return {**env, **overrides}


def _body(env: dict[str, str]) -> bytes:
    return json.dumps({"env": env, "config": SHIM_CONF}).encode()


def test_deeply_nested_body_is_a_decode_failure() -> None:
    with pytest.raises(cni.CniError) as info:
        decode_request_body(b'{"env": ' + DEEP + b"}")
    assert info.value.code == cni.DECODE_FAILURE


def test_lone_surrogates_become_replacement_characters_as_in_go() -> None:
    body = b'{"env": {"CNI_ARGS": "X=\\ud800", "K\\udc00": "v"}, "interfaceAttributes": {"mac": "\\udbff"}}'
    decoded = decode_request_body(body)
    assert dict(decoded.env) == {"CNI_ARGS": "X=\ufffd", "K\ufffd": "v"}
    assert decoded.interface_attributes is not None and decoded.interface_attributes.mac == "\ufffd"
    # A proper pair stays one character.
    assert decode_request_body(b'{"env": {"A": "\\ud83d\\ude00"}}').env["A"] == "\U0001f600"


B64_A, B64_B = base64.b64encode(b"a").decode(), base64.b64encode(b"b").decode()


@pytest.mark.parametrize(
    ("case", "body", "env", "config", "attrs"),
    [
        # Go decodes every key that folds to a field, in document order, into that field.
        (
            "later Env merges into env",
            '{"env": {"A": "1"}, "ENV": {"A": "2", "B": "3"}}',
            {"A": "2", "B": "3"},
            b"",
            None,
        ),
        ("earlier ENV merges under env", '{"ENV": {"B": "2"}, "env": {"A": "1"}}', {"A": "1", "B": "2"}, b"", None),
        ("null resets env", '{"env": {"A": "1"}, "Env": null, "eNv": {"C": "4"}}', {"C": "4"}, b"", None),
        ("last config wins", f'{{"config": "{B64_A}", "Config": "{B64_B}"}}', {}, b"b", None),
        ("last config wins either way", f'{{"Config": "{B64_B}", "config": "{B64_A}"}}', {}, b"a", None),
        ("null config after one", f'{{"config": "{B64_A}", "CONFIG": null}}', {}, b"", None),
        (
            "interfaceAttributes objects merge",
            '{"interfaceAttributes": {"mac": "m1", "cni-args": {"a": 1}},'
            ' "InterfaceAttributes": {"ips": ["10.0.0.1/24"], "mac": null, "CNI-ARGS": {"b": 2}}}',
            {},
            b"",
            (("10.0.0.1/24",), "m1", {"a": 1, "b": 2}),
        ),
        (
            "cni-args null resets",
            '{"interfaceAttributes": {"cni-args": {"a": 1}, "cni-args": null, "ips": ["x"], "ips": null}}',
            {},
            b"",
            ((), "", None),
        ),
        (
            "null interfaceAttributes resets",
            '{"interfaceAttributes": {"mac": "m"}, "interfaceattributes": null}',
            {},
            b"",
            None,
        ),
    ],
)
def test_duplicate_keys_decode_as_go(
    case: str, body: str, env: dict[str, str], config: bytes, attrs: tuple[Any, ...] | None
) -> None:
    decoded = decode_request_body(body.encode())
    assert (dict(decoded.env), decoded.config) == (env, config), case
    got = decoded.interface_attributes
    assert (None if got is None else (got.ips, got.mac, got.cni_args)) == attrs, case


@pytest.mark.parametrize(
    ("case", "overrides"),
    [
        ("trailing newline in container id", {"CNI_CONTAINERID": "abc\n"}),
        ("NUL in container id", {"CNI_CONTAINERID": "ab\x00c"}),
        ("slash in container id", {"CNI_CONTAINERID": "a/../../b"}),
        ("dot-dot container id", {"CNI_CONTAINERID": ".."}),
        ("container id starting with a dash", {"CNI_CONTAINERID": "-abc"}),
        ("non-ASCII container id", {"CNI_CONTAINERID": "abc\u00e9"}),
        ("ifname escaping the records dir", {"CNI_IFNAME": "../../zz"}),
        ("NUL in ifname", {"CNI_IFNAME": "e\x00"}),
        ("ifname with a space", {"CNI_IFNAME": "e th0"}),
        ("ifname too long", {"CNI_IFNAME": "x" * 16}),
        ("ifname ..", {"CNI_IFNAME": ".."}),
        ("ifname with a colon", {"CNI_IFNAME": "eth0:1"}),
    ],
)
@pytest.mark.parametrize("command", ["ADD", "DEL", "CHECK"])
def test_runtime_arguments_are_checked_as_libcni(case: str, overrides: dict[str, str], command: str) -> None:
    with pytest.raises(cni.CniError) as info:
        validate_call(CniRequest(env=_env(command, **overrides)))
    assert info.value.code == cni.INVALID_ENV, case


def test_valid_runtime_arguments_pass() -> None:
    call = validate_call(CniRequest(env=_env(CNI_CONTAINERID="A0_b.c-d" * 8, CNI_IFNAME="x" * 15)))
    assert call.ifname == "x" * 15
    assert validate_call(CniRequest(env={"CNI_COMMAND": "GC"})).container_id == ""


def test_context_metadata_is_always_legal_grpc_metadata() -> None:
    with bound_context(pod="default/p\u00e4\n", container_id="c1"):
        metadata = dict(context_metadata())
    assert metadata["x-multus-container-id"] == "c1"
    assert metadata["x-multus-pod"] == "default/p\\xe4\\n"
    assert all(v.isascii() and v.isprintable() for v in metadata.values())


def _error(answer: tuple[int, bytes]) -> dict[str, Any]:
    status, raw = answer
    assert status == 400, answer
    err = json.loads(raw)
    assert isinstance(err, dict) and err["msg"], err
    return err


def test_bad_input_through_a_real_gateway(tmp_path: Path) -> None:
    inst, _ = _setup(tmp_path, {"cniVersion": "1.0.0", "name": "rec", "type": "recorder"})
    records = Path(inst.config["cniDir"]) / "attachments"
    with running_services(inst, "cache", "executor", "gateway"), netns("we") as ns:
        sock = _sock(inst)
        cid = new_container_id()
        env = _env(CNI_CONTAINERID=cid, CNI_NETNS=ns.path)

        # Nesting deeper than Python's parser: a decode failure, not aiohttp's plain 500 (which shims read as 11).
        assert _error(http_call(sock, "POST", "/cni", b'{"env": ' + DEEP + b"}"))["code"] == cni.DECODE_FAILURE

        # Over the body limit: a CNI error object, not aiohttp's plain-text 413 (999 at the runtime).
        huge = b'{"env": {}, "config": "' + b"A" * (17 * 1024 * 1024) + b'"}'
        assert _error(http_call(sock, "POST", "/cni", huge))["code"] == cni.INVALID_CONFIG

        # A CNI_IFNAME that names a path: refused before anything is attached or written.
        for path in ("/cni", "/delegate"):
            bad_ifname = _body({**env, "CNI_IFNAME": "../../../zz"})
            assert _error(http_call(sock, "POST", path, bad_ifname))["code"] == cni.INVALID_ENV
        assert not list(tmp_path.rglob("zz.json"))
        assert not (records / cid).exists()

        # A container ID gRPC metadata cannot carry: INVALID_ENV, not an internal error.
        for bad in ("abc\n", "ab\x00c"):
            assert _error(http_call(sock, "POST", "/cni", _body({**env, "CNI_CONTAINERID": bad})))["code"] == 4

        # A lone surrogate in CNI_ARGS (Go makes it U+FFFD) and a pod name that is
        # not ASCII: DEL must still succeed, or the pod hangs in Terminating.
        for args in (ARGS + ";X=\ud800", "K8S_POD_NAMESPACE=default;K8S_POD_NAME=p\u00e4"):
            body = json.dumps({"env": {**env, "CNI_COMMAND": "DEL", "CNI_ARGS": args}, "config": SHIM_CONF})
            assert http_call(sock, "POST", "/cni", body.encode()) == (200, b""), args

        # The gateway still works after all of it.
        assert http_call(sock, "POST", "/cni", _body(env))[0] == 200
        assert http_call(sock, "POST", "/cni", _body({**env, "CNI_COMMAND": "DEL"})) == (200, b"")
        assert not (records / cid).exists()
