"""Server reflection on the executor socket, as grpcurl uses it: the
grpcio-reflection client (v1alpha) and a raw v1 stream (newer grpcurl asks v1 first)."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
from google.protobuf import descriptor_pool
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from tests.executor.conftest import Executor

EXECUTOR = "multus.executor.v1.Executor"


def test_v1alpha_reflection_lists_and_describes_the_executor(executor: Executor) -> None:
    with grpc.insecure_channel(f"unix://{executor.socket}") as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        assert EXECUTOR in set(database.get_services())
        pool = descriptor_pool.DescriptorPool(database)
        service = pool.FindServiceByName(EXECUTOR)
        methods = {m.name: m for m in service.methods}
        assert set(methods) == {
            "ExecPlugin",
            "ExecPlugins",
            "ListInterfaces",
            "DeleteInterface",
            "SetDefaultRoutes",
            "GetStats",
        }
        assert methods["ExecPlugin"].input_type.fields_by_name["plugin"].type == 9  # string
        assert "error" in methods["ExecPlugin"].output_type.fields_by_name


def _v1(
    channel: grpc.Channel, requests: Iterator[reflection_pb2.ServerReflectionRequest]
) -> list[reflection_pb2.ServerReflectionResponse]:
    call = channel.stream_stream(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    return list(call(requests, timeout=5))


def test_v1_reflection_answers_the_same(executor: Executor) -> None:
    with grpc.insecure_channel(f"unix://{executor.socket}") as channel:
        listed, described = _v1(
            channel,
            iter(
                [
                    reflection_pb2.ServerReflectionRequest(list_services=""),
                    reflection_pb2.ServerReflectionRequest(file_containing_symbol=EXECUTOR),
                ]
            ),
        )
    names = {s.name for s in listed.list_services_response.service}
    assert {EXECUTOR, "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"} <= names
    files = described.file_descriptor_response.file_descriptor_proto
    assert files and any(b"multus.executor.v1" in f for f in files)
