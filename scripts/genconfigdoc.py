"""Regenerate the key tables of docs/configuration.md from the config model
(services/common/config.py, with the words in services/common/config_docs.py).

Run: python scripts/genconfigdoc.py [--check]
"""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from services.common.config_docs import update_document  # noqa: E402

DOC = ROOT / "docs" / "configuration.md"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true", help="fail if docs/configuration.md is stale")
    opts = parser.parse_args()
    current = DOC.read_text()
    fresh = update_document(current)
    if opts.check:
        if fresh != current:
            sys.stdout.writelines(difflib.unified_diff(current.splitlines(True), fresh.splitlines(True), n=1))
            print("docs/configuration.md is stale; run python scripts/genconfigdoc.py")
            return 1
        return 0
    DOC.write_text(fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
