"""The gateway's readiness gate on the delegates' API credentials: table of
what the certs service answers over time, and what the gate concludes."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from services.common import cni
from services.common.config import config_from_dict
from services.gateway.credentials_gate import delegate_credentials_expected, wait_for_delegate_credentials

DOWN = cni.CniError(cni.TRY_AGAIN_LATER, "certs unavailable")

CASES = [
    # (case, answers of successive polls (the last repeats), bound in polls, outcome, polls made)
    ("no delegate credentials configured", [""], 10, "none configured", 1),
    ("token already valid", ["VALID"], 10, "usable", 1),
    ("static kubeconfig counts", ["STATIC"], 10, "usable", 1),
    ("expiring is still usable", ["EXPIRING"], 10, "usable", 1),
    ("missing, then issued", ["MISSING", "MISSING", "VALID"], 10, "usable", 3),
    ("certs down, then up without delegate credentials", [DOWN, DOWN, ""], 10, "none configured", 3),
    ("certs down, then token", [DOWN, "MISSING", "VALID"], 10, "usable", 3),
    ("never issued: bounded", ["MISSING"], 4, "gave up: delegate token MISSING", 4),
    ("expired token: bounded", ["EXPIRED"], 2, "gave up: delegate token EXPIRED", 2),
    ("certs never up: bounded", [DOWN], 3, "gave up: certs service: certs unavailable", 3),
]


@pytest.mark.parametrize(("case", "answers", "bound", "outcome", "polls"), CASES, ids=[c[0] for c in CASES])
async def test_gate(case: str, answers: Sequence[str | cni.CniError], bound: int, outcome: str, polls: int) -> None:
    now = [0.0]
    calls = [0]

    async def state() -> str:
        answer = answers[min(calls[0], len(answers) - 1)]
        calls[0] += 1
        now[0] += 1.0  # one poll per "second" of the fake clock
        if isinstance(answer, cni.CniError):
            raise answer
        return answer

    result = await wait_for_delegate_credentials(state, float(bound), poll=0, clock=lambda: now[0])
    assert (result, calls[0]) == (outcome, polls)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({}, True),
        ({"delegateServiceAccount": ""}, False),
        ({"clusterDir": "/srv/cluster"}, False),
        ({"delegateServiceAccount": "sa", "clusterDir": ""}, True),
    ],
)
def test_when_a_delegate_token_is_expected(raw: dict[str, str], expected: bool) -> None:
    assert delegate_credentials_expected(config_from_dict(raw)) is expected
