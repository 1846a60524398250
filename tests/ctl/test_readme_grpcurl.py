"""The README's grpcurl examples, sent to the real services: every method it
names exists on the socket it names, every `-d` payload parses into that
method's request, and every service is covered (health, ServiceInfo, and
each service's own API)."""

from __future__ import annotations

import base64
import re
import shlex
from dataclasses import dataclass

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_health.v1 import health_pb2  # noqa: F401  (registers grpc.health.v1 in the pool)

from services.api import cache_pb2, certs_pb2, executor_pb2, gateway_pb2, service_info_pb2  # noqa: F401
from tests.gateway.conftest import GatewayNode
from tests.support.services import REPO

SERVICES = ("gateway", "cache", "executor", "certs")


@dataclass(frozen=True)
class Example:
    sockets: tuple[str, ...]  # service names
    method: str  # "package.Service/Method", "" for `list`
    payload: str


def _commands(block: str) -> list[list[str]]:
    commands, pending = [], ""
    for line in block.splitlines():
        pending = f"{pending}\n{line}" if pending else line
        if pending.rstrip().endswith("\\"):
            pending = pending.rstrip()[:-1]
            continue
        try:
            tokens = shlex.split(pending)
        except ValueError:  # a quote still open: the command goes on
            continue
        pending = ""
        commands.append(tokens)
    return commands


def readme_examples() -> list[Example]:
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Operating it with grpcurl") :]
    section = section[: section.index("\n## ", 1)]
    examples = []
    for block in re.findall(r"```sh\n(.*?)```", section, re.S):
        for tokens in _commands(block):
            if not tokens or tokens[0] != "grpcurl":
                continue
            socket = next(t for t in tokens if t.endswith(".sock"))
            name = socket.rsplit("/", 1)[-1].removesuffix(".sock")
            sockets = SERVICES if name == "$s" else (name,)
            payload = tokens[tokens.index("-d") + 1] if "-d" in tokens else ""
            method = tokens[-1] if "/" in tokens[-1] and not tokens[-1].endswith(".sock") else ""
            examples.append(Example(sockets, method, payload.replace("$CONF", base64.b64encode(b"{}").decode())))
    return examples


def _call(socket: str, example: Example) -> grpc.StatusCode:
    service_name, method_name = example.method.split("/")
    method = descriptor_pool.Default().FindServiceByName(service_name).FindMethodByName(method_name)
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    request = json_format.Parse(example.payload or "{}", request_class())
    with grpc.insecure_channel(f"unix://{socket}") as channel:
        call = channel.unary_unary(
            f"/{example.method}",
            request_serializer=request_class.SerializeToString,
            response_deserializer=response_class.FromString,
        )
        try:
            call(request, timeout=30)
        except grpc.RpcError as err:
            return err.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def test_every_readme_grpcurl_call_reaches_its_method(ctl_node: GatewayNode) -> None:
    examples = readme_examples()
    methods = {e.method for e in examples}
    assert {
        "grpc.health.v1.Health/Check",
        "multus.common.v1.ServiceInfo/GetServiceInfo",
        "multus.gateway.v1.Gateway/Plan",
        "multus.gateway.v1.Gateway/ListAttachments",
        "multus.cache.v1.Cache/Stats",
        "multus.certs.v1.Certs/GetCredentialStatus",
        "multus.executor.v1.Executor/GetStats",
    } <= methods
    assert {s for e in examples if not e.method for s in e.sockets} == set(SERVICES)  # `list` on every socket
    answers = {}
    for example in (e for e in examples if e.method):
        for service in example.sockets:
            answers[(service, example.method)] = _call(ctl_node.instance.grpc_socket(service), example)
    assert grpc.StatusCode.UNIMPLEMENTED not in answers.values(), answers
    assert grpc.StatusCode.UNAVAILABLE not in answers.values(), answers
    # Read-only calls answer; running a delegate is the operator guard's to refuse.
    assert answers[("executor", "multus.executor.v1.Executor/ExecPlugin")] == grpc.StatusCode.PERMISSION_DENIED
    assert answers[("gateway", "multus.gateway.v1.Gateway/Plan")] == grpc.StatusCode.OK
    assert all(answers[(s, "multus.common.v1.ServiceInfo/GetServiceInfo")] == grpc.StatusCode.OK for s in SERVICES)
