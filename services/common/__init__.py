"""Code every multus service shares: config, logging, metrics, gRPC helpers, CNI types."""
