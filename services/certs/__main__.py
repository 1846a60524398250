"""`python -m services.certs --config <daemon-config.json>` runs the node's
certs service; `python -m services.certs approve ...` runs the cluster-wide
CSR approver."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from services.common.cli import run_service


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "approve":
        from services.certs.approver import main as approve_main

        return int(approve_main(args[1:]))
    from services.certs.server import serve

    return run_service("certs", serve, args)


if __name__ == "__main__":
    sys.exit(main())
