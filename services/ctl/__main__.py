"""`python -m services.ctl ...` is `multusctl ...`."""

from __future__ import annotations

import sys

from services.ctl.main import main

if __name__ == "__main__":
    sys.exit(main())
