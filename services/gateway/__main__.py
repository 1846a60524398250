"""Entry point: `python -m services.gateway --config <daemon-config.json>`."""

from __future__ import annotations

import sys

from services.common.cli import run_service
from services.gateway.server import serve


def main() -> int:
    return run_service("gateway", serve)


if __name__ == "__main__":
    sys.exit(main())
