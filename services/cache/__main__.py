"""`python -m services.cache --config <daemon-config.json>`: the node's cache of
Pods and NetworkAttachmentDefinitions (the only reader of the Kubernetes API)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from services.common.cli import run_service


def main(argv: Sequence[str] | None = None) -> int:
    from services.cache.server import serve

    return run_service("cache", serve, argv)


if __name__ == "__main__":
    sys.exit(main())
