"""Compatibility fixtures: the installed shim against a daemon answering as upstream's and as ours.

Upstream's multus-daemon (Go net/http) has no /readyz in its releases up to
v4.3.0 (404; its development branch added one), answers failures with plain text (`http.Error`), and always
returns a CNI 1.0.0 result as `{"Result": ...}`; ours has /readyz and answers
failures with CNI error objects. The shim must work against both.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.shim.conftest import call_shim, cni_env, network_conf
from tests.shim.fake_daemon import Answer, FakeDaemon

# What upstream's daemon sends for a bridge cluster network (cni100.Result via json.Marshal).
UPSTREAM_ADD_BODY = (
    b'{"Result":{"cniVersion":"1.0.0","interfaces":[{"name":"cni0","mac":"0a:58:0a:f4:00:01"},'
    b'{"name":"eth0","mac":"0a:58:0a:f4:00:05","sandbox":"/var/run/netns/test"}],'
    b'"ips":[{"interface":1,"address":"10.244.0.5/24","gateway":"10.244.0.1"}],'
    b'"routes":[{"dst":"0.0.0.0/0","gw":"10.244.0.1"}],"dns":{}}}'
)
PLAIN_400 = b'[default/web/0123456789abcdef:eth0]: ERRORED: error adding container to network "macvlan": boom\n'


FLAVOURS = pytest.mark.parametrize("flavour", ["upstream", "ours"])


@FLAVOURS
def test_add_request_shape_and_readiness_sequence(shim_bin: Path, socket_dir: Path, flavour: str) -> None:
    conf = network_conf(socket_dir, "1.0.0")
    env = cni_env("ADD", SECRET_TOKEN="s3cr3t")
    with FakeDaemon(socket_dir, flavour, cni_answers=[Answer(200, UPSTREAM_ADD_BODY)]) as daemon:
        result = call_shim(shim_bin, env, conf)
    assert result.returncode == 0, result
    assert daemon.paths() == [("POST", "/cni")]  # sent at once: no probe while the daemon answers
    post = daemon.requests[-1]
    assert post.headers["content-type"] == "application/json"
    body = post.json()
    assert set(body) == {"env", "config"}
    assert base64.b64decode(body["config"], validate=True) == conf
    assert body["env"] == {k: v for k, v in env.items() if k.startswith("CNI_")}
    assert result.json() == json.loads(UPSTREAM_ADD_BODY)["Result"]


@pytest.mark.parametrize(
    ("version", "expected_ips"),
    [
        ("0.3.1", [{"interface": 1, "address": "10.244.0.5/24", "gateway": "10.244.0.1", "version": "4"}]),
        ("0.4.0", [{"interface": 1, "address": "10.244.0.5/24", "gateway": "10.244.0.1", "version": "4"}]),
        ("1.1.0", [{"interface": 1, "address": "10.244.0.5/24", "gateway": "10.244.0.1"}]),
    ],
)
def test_add_result_printed_in_the_config_version(
    shim_bin: Path, socket_dir: Path, version: str, expected_ips: list[dict[str, Any]]
) -> None:
    with FakeDaemon(socket_dir, "upstream", cni_answers=[Answer(200, UPSTREAM_ADD_BODY)]):
        result = call_shim(shim_bin, cni_env("ADD"), network_conf(socket_dir, version))
    assert result.returncode == 0
    printed = result.json()
    assert printed["cniVersion"] == version
    assert printed["ips"] == expected_ips


def test_chunked_answer(shim_bin: Path, socket_dir: Path) -> None:
    with FakeDaemon(socket_dir, "ours", cni_answers=[Answer(200, UPSTREAM_ADD_BODY, chunked=True)]):
        result = call_shim(shim_bin, cni_env("ADD"), network_conf(socket_dir))
    assert result.returncode == 0, result
    assert result.json()["interfaces"][1]["name"] == "eth0"


@pytest.mark.parametrize("command", ["DEL", "CHECK", "GC", "STATUS"])
@FLAVOURS
def test_verbs_without_result_print_nothing(shim_bin: Path, socket_dir: Path, command: str, flavour: str) -> None:
    with FakeDaemon(socket_dir, flavour, cni_answers=[Answer(200, b"")]) as daemon:
        result = call_shim(shim_bin, cni_env(command), network_conf(socket_dir, "1.1.0"))
    assert (result.returncode, result.stdout) == (0, b"")
    assert daemon.requests[-1].json()["env"]["CNI_COMMAND"] == command
    assert daemon.paths() == [("POST", "/cni")]


def test_upstream_plain_text_failure(shim_bin: Path, socket_dir: Path) -> None:
    answer = Answer(400, PLAIN_400, "text/plain; charset=utf-8")
    with FakeDaemon(socket_dir, "upstream", cni_answers=[answer]):
        result = call_shim(shim_bin, cni_env("ADD"), network_conf(socket_dir, "0.4.0"))
    assert result.returncode == 1
    assert result.json() == {
        "cniVersion": "0.4.0",
        "code": 999,
        "msg": PLAIN_400.decode().strip(),
        "details": "multus daemon answered HTTP 400 on /cni",
    }


def test_upstream_readiness_indicator_text_is_try_again(shim_bin: Path, socket_dir: Path) -> None:
    text = b"have you checked that your default network is ready? still waiting for readinessindicatorfile @ /x\n"
    with FakeDaemon(socket_dir, "upstream", cni_answers=[Answer(400, text, "text/plain")]):
        result = call_shim(shim_bin, cni_env("ADD"), network_conf(socket_dir))
    assert result.json()["code"] == 11


@pytest.mark.parametrize("command", ["ADD", "DEL", "CHECK"])
def test_our_cni_error_object_keeps_its_code(shim_bin: Path, socket_dir: Path, command: str) -> None:
    error = {"code": 7, "msg": 'network "missing-net" not found', "details": "default/web"}
    with FakeDaemon(socket_dir, "ours", cni_answers=[Answer(400, json.dumps(error).encode())]):
        result = call_shim(shim_bin, cni_env(command), network_conf(socket_dir, "0.3.1"))
    assert result.returncode == 1
    assert result.json() == {"cniVersion": "0.3.1", **error}


def test_waits_while_our_gateway_is_not_ready(shim_bin: Path, socket_dir: Path) -> None:
    with FakeDaemon(
        socket_dir, "ours", ready_statuses=[503, 503, 500, 200], cni_answers=[Answer(200, UPSTREAM_ADD_BODY)]
    ) as daemon:
        result = call_shim(shim_bin, cni_env("ADD", MULTUS_SHIM_READY_TIMEOUT="10"), network_conf(socket_dir))
    assert result.returncode == 0
    # Refused (503), then /readyz until ready, then sent again.
    assert daemon.paths() == [("POST", "/cni"), *[("GET", "/readyz")] * 4, ("POST", "/cni")]
    assert daemon.answered == [503, 503, 503, 500, 200, 200]


def test_never_ready_is_11_and_nothing_done(shim_bin: Path, socket_dir: Path) -> None:
    with FakeDaemon(socket_dir, "ours", ready_statuses=[503]) as daemon:
        result = call_shim(shim_bin, cni_env("ADD", MULTUS_SHIM_READY_TIMEOUT="0.4"), network_conf(socket_dir))
    assert result.json()["code"] == 11
    # The one call sent was refused; waiting went through /readyz only.
    assert daemon.paths().count(("POST", "/cni")) == 1 and daemon.answered[0] == 503


def test_del_is_not_held_back_by_readiness(shim_bin: Path, socket_dir: Path) -> None:
    with FakeDaemon(socket_dir, "ours", ready_statuses=[503], cni_answers=[Answer(200)]) as daemon:
        result = call_shim(shim_bin, cni_env("DEL"), network_conf(socket_dir))
    assert (result.returncode, result.stdout) == (0, b"")
    assert daemon.paths() == [("POST", "/cni")] and daemon.answered == [200]


def test_add_lost_mid_request_is_not_resent(shim_bin: Path, socket_dir: Path) -> None:
    with FakeDaemon(socket_dir, "ours", cni_answers=[Answer(hang_up=True)]) as daemon:
        result = call_shim(shim_bin, cni_env("ADD", MULTUS_SHIM_READY_TIMEOUT="5"), network_conf(socket_dir))
    assert result.returncode == 1
    assert result.json()["code"] == 11
    assert daemon.paths().count(("POST", "/cni")) == 1


def test_del_lost_mid_request_is_retried(shim_bin: Path, socket_dir: Path) -> None:
    with FakeDaemon(socket_dir, "ours", cni_answers=[Answer(hang_up=True), Answer(200)]) as daemon:
        result = call_shim(shim_bin, cni_env("DEL", MULTUS_SHIM_DEL_TIMEOUT="5"), network_conf(socket_dir))
    assert (result.returncode, result.stdout) == (0, b"")
    assert daemon.paths().count(("POST", "/cni")) == 2
    assert not (socket_dir / "del-spool").exists()


def test_del_answered_503_until_the_deadline_is_spooled(shim_bin: Path, socket_dir: Path) -> None:
    with FakeDaemon(socket_dir, "ours", cni_answers=[Answer(503, b"draining", "text/plain")]):
        result = call_shim(shim_bin, cni_env("DEL", MULTUS_SHIM_DEL_TIMEOUT="0.4"), network_conf(socket_dir))
    assert result.returncode == 0
    assert len(list((socket_dir / "del-spool").iterdir())) == 1


def test_slow_answer_hits_the_response_timeout(shim_bin: Path, socket_dir: Path) -> None:
    def stall(seen: Any) -> None:
        if seen.path == "/cni":
            time.sleep(1.5)

    daemon = FakeDaemon(socket_dir, "ours", cni_answers=[Answer(200, UPSTREAM_ADD_BODY)], on_request=stall)
    with daemon:
        result = call_shim(shim_bin, cni_env("ADD", MULTUS_SHIM_RESPONSE_TIMEOUT="0.5"), network_conf(socket_dir))
    assert result.json()["code"] == 11


def test_probe_retried_as_post_null_when_get_is_not_allowed(shim_bin: Path, socket_dir: Path) -> None:
    answers = [Answer(503, b"starting", "text/plain"), Answer(200, UPSTREAM_ADD_BODY)]
    with FakeDaemon(socket_dir, "post-only-probes", cni_answers=answers) as daemon:
        result = call_shim(shim_bin, cni_env("ADD", MULTUS_SHIM_READY_TIMEOUT="2"), network_conf(socket_dir))
    assert result.returncode == 0, result
    assert daemon.paths() == [("POST", "/cni"), ("GET", "/readyz"), ("POST", "/readyz"), ("POST", "/cni")]


def test_upstream_daemon_refusing_the_first_call_is_probed_through_healthz(shim_bin: Path, socket_dir: Path) -> None:
    answers = [Answer(503, b"starting", "text/plain"), Answer(200, UPSTREAM_ADD_BODY)]
    with FakeDaemon(socket_dir, "upstream", cni_answers=answers) as daemon:
        result = call_shim(shim_bin, cni_env("ADD", MULTUS_SHIM_READY_TIMEOUT="2"), network_conf(socket_dir))
    assert result.returncode == 0, result
    assert daemon.paths() == [("POST", "/cni"), ("GET", "/readyz"), ("GET", "/healthz"), ("POST", "/cni")]
