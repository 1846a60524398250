"""Who is calling the executor: the contract between the gateway's executor
client (which marks its calls) and the executor's operator guard (which reads
the mark). See services/executor/guard.py for what the mark allows."""

from __future__ import annotations

CALLER_METADATA_KEY = "x-multus-caller"
GATEWAY_CALLER = "gateway"
