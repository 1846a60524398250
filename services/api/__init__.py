"""Generated protobuf and gRPC modules (see scripts/genproto.py)."""
