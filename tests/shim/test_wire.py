"""Table tests for the shim's pure parts: CNI env/config checks, the request body, HTTP and answers."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from shim import multus_shim as shim

VALID_ENV = {
    "CNI_COMMAND": "ADD",
    "CNI_CONTAINERID": "abc123",
    "CNI_NETNS": "/var/run/netns/x",
    "CNI_IFNAME": "eth0",
    "CNI_PATH": "/opt/cni/bin",
    "CNI_ARGS": "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web",
    "HOME": "/root",
    "HTTPS_PROXY": "http://user:secret@proxy",
}
CONF = b'{"cniVersion": "0.4.0", "name": "multus-cni-network", "type": "multus-shim"}'


@pytest.mark.parametrize(
    ("case", "text", "expected"),
    [
        ("object with nesting", ' {"a": [1, 2.5, null, true, "\\u00e9"]} \n', {"a": [1, 2.5, None, True, "é"]}),
        ("bare string", '"x"', "x"),
        ("bytes input", b"[1]", [1]),
    ],
)
def test_decode_json(case: str, text: str | bytes, expected: object) -> None:
    assert shim.decode_json(text) == expected, case


@pytest.mark.parametrize("text", ["", "   ", "{bad", '{"a": 1} x', b"\xff\xfe", "[1,]", "{'a': 1}"])
def test_decode_json_rejects(text: str | bytes) -> None:
    with pytest.raises(ValueError):
        shim.decode_json(text)


def test_encode_json_round_trips_through_the_real_json_module() -> None:
    value = {"env": {"CNI_ARGS": 'K=é;Q="x"'}, "n": [1, 2.5, None, True, False], "nested": {}}
    assert json.loads(shim.encode_json(value)) == value
    with pytest.raises(TypeError):
        shim.encode_json({"x": object()})


@pytest.mark.parametrize(
    ("case", "env", "code", "msg"),
    [
        ("no command", {}, 4, "required env variables [CNI_COMMAND] missing"),
        ("unknown command", {"CNI_COMMAND": "REMOVE"}, 4, "unknown CNI_COMMAND: REMOVE"),
        ("lower-case command is unknown, as libcni", {"CNI_COMMAND": "add"}, 4, "unknown CNI_COMMAND: add"),
    ],
)
def test_cni_command_errors(case: str, env: dict[str, str], code: int, msg: str) -> None:
    with pytest.raises(shim.ShimError) as raised:
        shim.cni_command(env)
    assert (raised.value.code, raised.value.msg) == (code, msg), case


@pytest.mark.parametrize(
    ("case", "command", "drop", "override", "msg"),
    [
        (
            "ADD needs a container id",
            "ADD",
            ["CNI_CONTAINERID"],
            {},
            "required env variables [CNI_CONTAINERID] missing",
        ),
        ("ADD needs a netns", "ADD", ["CNI_NETNS"], {}, "required env variables [CNI_NETNS] missing"),
        (
            "all missing ones are named",
            "CHECK",
            ["CNI_IFNAME", "CNI_PATH"],
            {},
            "required env variables [CNI_IFNAME,CNI_PATH] missing",
        ),
        ("DEL needs an ifname", "DEL", ["CNI_IFNAME"], {}, "required env variables [CNI_IFNAME] missing"),
        ("GC needs CNI_PATH", "GC", ["CNI_PATH"], {}, "required env variables [CNI_PATH] missing"),
        ("container id charset", "ADD", [], {"CNI_CONTAINERID": "ab/c"}, "invalid characters in containerID"),
        ("container id first char", "ADD", [], {"CNI_CONTAINERID": "-abc"}, "invalid characters in containerID"),
        ("ifname too long", "ADD", [], {"CNI_IFNAME": "a" * 16}, "interface name is too long"),
        (
            "ifname with slash",
            "ADD",
            [],
            {"CNI_IFNAME": "a/b"},
            "interface name contains / or : or whitespace characters",
        ),
        ("ifname dot", "DEL", [], {"CNI_IFNAME": ".."}, "interface name is . or .."),
    ],
)
def test_validate_env_errors(case: str, command: str, drop: list[str], override: dict[str, str], msg: str) -> None:
    env = {k: v for k, v in VALID_ENV.items() if k not in drop} | override
    with pytest.raises(shim.ShimError) as raised:
        shim.validate_env(command, env)
    assert (raised.value.code, raised.value.msg) == (4, msg), case


@pytest.mark.parametrize(
    ("case", "command", "drop"),
    [
        ("DEL may have no netns (the sandbox is gone)", "DEL", ["CNI_NETNS"]),
        ("STATUS is plugin-level", "STATUS", ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"]),
        ("GC is plugin-level", "GC", ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"]),
    ],
)
def test_validate_env_accepts(case: str, command: str, drop: list[str]) -> None:
    env = {k: v for k, v in VALID_ENV.items() if k not in drop}
    assert shim.validate_env(command, env) == {k: v for k, v in env.items() if k.startswith("CNI_")}, case


def test_only_cni_variables_travel() -> None:
    forwarded = shim.validate_env("ADD", VALID_ENV)
    assert "HTTPS_PROXY" not in forwarded and "HOME" not in forwarded
    assert forwarded["CNI_ARGS"] == VALID_ENV["CNI_ARGS"]


@pytest.mark.parametrize(
    ("case", "stdin", "code"),
    [
        ("not JSON", b"{not json", 6),
        ("empty stdin", b"", 6),
        ("not UTF-8", b'{"a": "\xff"}', 6),
        ("trailing garbage", b'{"cniVersion": "1.0.0"} {}', 6),
        ("JSON but a list", b"[]", 7),
        ("JSON but a string", b'"conf"', 7),
        ("cniVersion not a string", b'{"cniVersion": 1}', 7),
        ("daemonSocketDir not a string", b'{"cniVersion": "1.0.0", "daemonSocketDir": ["/run"]}', 7),
    ],
)
def test_parse_config_errors(case: str, stdin: bytes, code: int) -> None:
    with pytest.raises(shim.ShimError) as raised:
        shim.parse_config(stdin)
    assert raised.value.code == code, case


@pytest.mark.parametrize(
    ("case", "stdin", "version", "socket_dir"),
    [
        ("defaults as upstream's shim", b'{"cniVersion": "1.0.0"}', "1.0.0", "/run/multus/"),
        ("no cniVersion means 0.1.0, as libcni", b"{}", "0.1.0", "/run/multus/"),
        ("empty daemonSocketDir means the default", b'{"daemonSocketDir": ""}', "0.1.0", "/run/multus/"),
        ("daemonSocketDir honoured", b'{"cniVersion": "0.4.0", "daemonSocketDir": "/x/y"}', "0.4.0", "/x/y"),
    ],
)
def test_parse_config(case: str, stdin: bytes, version: str, socket_dir: str) -> None:
    got_version, got_dir = shim.parse_config(stdin)
    assert (got_version, got_dir) == (version, socket_dir), case


def test_unsupported_version_is_code_1() -> None:
    with pytest.raises(shim.ShimError) as raised:
        shim.parse_invocation("ADD", VALID_ENV, b'{"cniVersion": "0.5.0"}')
    assert raised.value.code == 1
    assert "0.5.0" in raised.value.details


def test_socket_path_too_long_is_a_config_error() -> None:
    conf = json.dumps({"cniVersion": "1.0.0", "daemonSocketDir": "/" + "d" * 120}).encode()
    with pytest.raises(shim.ShimError) as raised:
        shim.parse_invocation("ADD", VALID_ENV, conf)
    assert raised.value.code == 7


@pytest.mark.parametrize(
    ("case", "directory", "expected"),
    [
        ("trailing slash", "/run/multus/", "/run/multus/multus.sock"),
        ("no trailing slash", "/run/multus", "/run/multus/multus.sock"),
        ("root", "/", "/multus.sock"),
    ],
)
def test_join_path(case: str, directory: str, expected: str) -> None:
    assert shim.join_path(directory, "multus.sock") == expected, case


def test_request_body_is_upstreams_envelope() -> None:
    invocation = shim.parse_invocation("ADD", VALID_ENV, CONF)
    body = json.loads(shim.request_body(invocation))
    assert set(body) == {"env", "config"}
    assert body["env"] == {k: v for k, v in VALID_ENV.items() if k.startswith("CNI_")}
    # Go encodes []byte as standard, padded base64.
    assert body["config"] == base64.standard_b64encode(CONF).decode()


def test_request_body_omits_empty_config_as_go_omitempty() -> None:
    invocation = shim.Invocation("STATUS", {"CNI_COMMAND": "STATUS"}, b"", "1.1.0", "/run/multus/")
    assert json.loads(shim.request_body(invocation)) == {"env": {"CNI_COMMAND": "STATUS"}}


@pytest.mark.parametrize(
    ("case", "stdin", "expected"),
    [
        ("echoes a version we speak", b'{"cniVersion": "0.3.1"}', "0.3.1"),
        ("latest for an unknown one", b'{"cniVersion": "9.0.0"}', "1.1.0"),
        ("latest without stdin", b"", "1.1.0"),
    ],
)
def test_version_info(case: str, stdin: bytes, expected: str) -> None:
    info = shim.version_info(stdin)
    assert info["cniVersion"] == expected, case
    assert info["supportedVersions"] == ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]


@pytest.mark.parametrize(
    ("case", "env", "expected"),
    [
        ("defaults", {}, (60.0, 15.0, 110.0)),
        (
            "overrides",
            {"MULTUS_SHIM_READY_TIMEOUT": "2.5", "MULTUS_SHIM_DEL_TIMEOUT": "0", "MULTUS_SHIM_RESPONSE_TIMEOUT": "9"},
            (2.5, 0.0, 9.0),
        ),
        ("blank means default", {"MULTUS_SHIM_DEL_TIMEOUT": " "}, (60.0, 15.0, 110.0)),
    ],
)
def test_read_timeouts(case: str, env: dict[str, str], expected: tuple[float, float, float]) -> None:
    assert shim.read_timeouts(env) == expected, case


@pytest.mark.parametrize("raw", ["soon", "-1", "nan", "inf"])
def test_read_timeouts_rejects(raw: str) -> None:
    with pytest.raises(shim.ShimError) as raised:
        shim.read_timeouts({"MULTUS_SHIM_READY_TIMEOUT": raw})
    assert raised.value.code == 4


@pytest.mark.parametrize(
    ("case", "raw", "expected"),
    [
        ("content-length", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", (200, b"{}")),
        ("content-length ignores extra bytes", b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nab", (200, b"a")),
        ("no length: to EOF", b"HTTP/1.1 400 Bad Request\r\n\r\noops\n", (400, b"oops\n")),
        (
            "chunked",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
            (200, b"abcde"),
        ),
        (
            "interim 100 Continue first",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
            (204, b""),
        ),
        ("HTTP/1.0 server", b"HTTP/1.0 200 OK\r\n\r\n", (200, b"")),
    ],
)
def test_parse_http_response(case: str, raw: bytes, expected: tuple[int, bytes]) -> None:
    assert shim.parse_http_response(raw) == expected, case


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n",
        b"SPDY 200\r\n\r\n",
        b"HTTP/1.1 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
)
def test_parse_http_response_rejects(raw: bytes) -> None:
    with pytest.raises(ValueError):
        shim.parse_http_response(raw)


@pytest.mark.parametrize(
    ("case", "status", "text", "code"),
    [
        ("readiness indicator (transient)", 400, "still waiting for readinessindicatorfile @ /x", 11),
        ("API timeout", 400, "error getting pod: context deadline exceeded", 11),
        ("bad runtime args", 400, "could not extract the kubernetes runtime args: x", 4),
        ("bad env", 400, "could not extract the CNI command args: x", 4),
        ("daemon could not decode", 400, "invalid character 'x' looking for beginning of value", 6),
        ("version", 400, "incompatible CNI versions; config is 1.1.0", 1),
        ("anything else: libcni's internal error, as upstream's shim", 400, "delegate failed: boom", 999),
        ("server-side failure: try again", 500, "internal server error", 11),
    ],
)
def test_classify_plain_error(case: str, status: int, text: str, code: int) -> None:
    assert shim.classify_plain_error(status, text) == code, case


@pytest.mark.parametrize(
    ("case", "status", "body", "expected"),
    [
        (
            "our CNI error object",
            400,
            b'{"code": 7, "msg": "bad NAD", "details": "net1"}',
            (7, "bad NAD", "net1"),
        ),
        ("Go-style capitalised keys", 400, b'{"Code": 3, "Msg": "gone"}', (3, "gone", "")),
        (
            "upstream's plain text",
            400,
            b"[default/web/abc:eth0]: ERRORED: delegate failed\n",
            (999, "[default/web/abc:eth0]: ERRORED: delegate failed", "multus daemon answered HTTP 400 on /cni"),
        ),
        (
            "JSON that is not an error object stays text",
            400,
            b'{"code": "x"}',
            (999, '{"code": "x"}', "multus daemon answered HTTP 400 on /cni"),
        ),
        ("empty body", 502, b"", (11, "HTTP 502 with an empty body", "multus daemon answered HTTP 502 on /cni")),
    ],
)
def test_error_from_answer(case: str, status: int, body: bytes, expected: tuple[int, str, str]) -> None:
    error = shim.error_from_answer(status, body)
    assert (error.code, error.msg, error.details) == expected, case


@pytest.mark.parametrize(
    ("case", "command", "body", "expected"),
    [
        ("ADD result converted", "ADD", b'{"Result": {"cniVersion": "1.0.0", "ips": []}}', {"cniVersion": "0.4.0"}),
        ("lower-case key as Go matches it", "ADD", b'{"result": {"cniVersion": "1.0.0"}}', {"cniVersion": "0.4.0"}),
        ("DEL has no result", "DEL", b"", None),
        ("CHECK ignores any body", "CHECK", b"whatever", None),
    ],
)
def test_result_from_answer(case: str, command: str, body: bytes, expected: Any) -> None:
    result = shim.result_from_answer(command, 200, body, "0.4.0")
    if expected is None:
        assert result is None, case
    else:
        assert result is not None and result["cniVersion"] == expected["cniVersion"], case


@pytest.mark.parametrize("body", [b"", b"not json", b"{}", b'{"Result": null}'])
def test_add_without_a_result_is_an_error(body: bytes) -> None:
    with pytest.raises(shim.ShimError) as raised:
        shim.result_from_answer("ADD", 200, body, "1.0.0")
    assert raised.value.code == 999


@pytest.mark.parametrize(
    ("case", "container_id", "expected"),
    [
        ("a runtime's hex id is kept", "4f3c9e0a1b", "4f3c9e0a1b"),
        ("allowed punctuation kept", "pod_1.a-b", "pod_1.a-b"),
        ("anything else becomes _", "a/b c:é", "a_b_c__"),
        ("bounded length", "x" * 300, "x" * 200),
    ],
)
def test_sanitize_container_id(case: str, container_id: str, expected: str) -> None:
    assert shim.sanitize_container_id(container_id) == expected, case


def test_spool_file_name() -> None:
    assert shim.spool_file_name(1700000000123456789, "abc/def") == "1700000000123456789-abc_def.json"


def test_error_object_carries_cni_version_and_omits_empty_details() -> None:
    assert shim.error_object(shim.ShimError(11, "later"), "0.4.0") == {
        "cniVersion": "0.4.0",
        "code": 11,
        "msg": "later",
    }
    assert shim.error_object(shim.ShimError(7, "bad", "why"), "1.1.0")["details"] == "why"


def test_run_turns_any_exception_into_a_cni_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(invocation: object, timeouts: object) -> None:
        raise RuntimeError("unexpected")

    monkeypatch.setattr(shim, "call_gateway", explode)
    status, output = shim.run(VALID_ENV, CONF)
    assert status == 1
    assert json.loads(output) == {
        "cniVersion": "0.4.0",
        "code": 999,
        "msg": "multus-shim internal error",
        "details": "RuntimeError: unexpected",
    }
