"""When to renew: pure arithmetic over issue time, expiry and a jitter value."""

from __future__ import annotations

from services.common.backoff import backoff_delay

# A certificate is renewed at a random point in this part of its lifetime, so a
# fleet of nodes started together does not renew together.
ROTATION_FRACTION_MIN = 0.7
ROTATION_FRACTION_MAX = 0.9
# Tokens are refreshed at this part of their TTL (what kubelet does for projected tokens).
TOKEN_REFRESH_FRACTION = 0.8
# The TokenRequest API rejects shorter expirations.
TOKEN_MIN_SECONDS = 600

BACKOFF_FIRST_CEILING = 2.0  # the first retry comes after 1-2 s
BACKOFF_CAP = 300.0
BACKOFF_MIN = 0.5


def lifetime(issued: float, not_after: float) -> float:
    return max(not_after - issued, 0.0)


def rotation_deadline(issued: float, not_after: float, jitter: float) -> float:
    """The renewal time for a certificate, `jitter` in [0, 1) choosing the point in 70-90%
    of the lifetime counted from issue time (not notBefore, which signers backdate)."""
    jitter = min(max(jitter, 0.0), 1.0)
    fraction = ROTATION_FRACTION_MIN + (ROTATION_FRACTION_MAX - ROTATION_FRACTION_MIN) * jitter
    return issued + fraction * lifetime(issued, not_after)


def refresh_deadline(issued: float, not_after: float) -> float:
    """The refresh time for a token: 80% of its TTL."""
    return issued + TOKEN_REFRESH_FRACTION * lifetime(issued, not_after)


def issue_time(observed: float, not_before: float, not_after: float) -> float:
    """Best estimate of when a certificate loaded from disk was issued: when it was
    written (`observed`), bounded by its validity window."""
    return min(max(observed, not_before), not_after)


def retry_delay(attempt: int, jitter: float, now: float, not_after: float) -> float:
    """The common backoff after `attempt` consecutive failures (0-based), never
    longer than a quarter of what is left of the current credential's life, so
    several retries still fit before it expires."""
    delay = backoff_delay(attempt + 1, BACKOFF_FIRST_CEILING, BACKOFF_CAP, jitter)
    if not_after > now:
        delay = min(delay, (not_after - now) / 4)
    return max(delay, BACKOFF_MIN)


def token_ttl(configured: int) -> int:
    return max(int(configured), TOKEN_MIN_SECONDS)


def parse_duration(text: str) -> float:
    """Go-style duration ("10m", "1h30m", "90s", "2h") in seconds. Raises ValueError."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    text = text.strip()
    if not text:
        raise ValueError("empty duration")
    total, number, i = 0.0, "", 0
    while i < len(text):
        ch = text[i]
        if ch.isdigit() or ch == ".":
            number += ch
            i += 1
            continue
        unit = "ms" if text.startswith("ms", i) else ch
        if unit not in units or not number:
            raise ValueError(f"invalid duration {text!r}")
        total += float(number) * units[unit]
        number = ""
        i += len(unit)
    if number:
        raise ValueError(f"invalid duration {text!r}: missing unit")
    return total
