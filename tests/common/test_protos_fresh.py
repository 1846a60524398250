"""Generated protobuf code is committed; it must match protos/."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_generated_code_is_fresh() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/genproto.py", "--check"], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_service_proto_is_importable() -> None:
    from services.api import cache_pb2_grpc, certs_pb2_grpc, executor_pb2_grpc, gateway_pb2_grpc

    for module, stub in (
        (gateway_pb2_grpc, "GatewayStub"),
        (cache_pb2_grpc, "CacheStub"),
        (executor_pb2_grpc, "ExecutorStub"),
        (certs_pb2_grpc, "CertsStub"),
    ):
        assert hasattr(module, stub)
