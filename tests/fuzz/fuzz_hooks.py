"""Hooks for schemathesis against muster (scripts/fuzz-api).

JSON Schema cannot compare two fields or bound a duration written as text,
so the document says those rules in words. This file is their list: a
422 whose every field error is one of them is the server keeping a rule
the document states, not a schema-valid request refused. Anything else
still fails the run. Positive cases are also repaired to satisfy the
cross-field time rules, so that the stateful phase gets past creations,
and each gets a fresh Idempotency-Key (a key reused with another body is
a correct 422 of its own).
"""
import re
import uuid
from datetime import datetime, timedelta, timezone

import schemathesis
from hypothesis.internal import lambda_sources

# CPython before 3.11.8 raises SystemError ("AST constructor recursion
# depth mismatch", python/cpython#106905) from ast.parse deep in a stack.
# Hypothesis parses a lambda's source only to name it in a strategy's
# repr, and the error aborted whole operations' tests ("Runtime Error")
# on this machine's 3.11.7. The name is cosmetic: fall back to "lambda".
_describe_lambda = lambda_sources.lambda_description


def _lambda_description(f):
    try:
        return _describe_lambda(f)
    except SystemError:
        return "lambda"


lambda_sources.lambda_description = _lambda_description

# (field, message) pairs, as regular expressions, of the rules the
# document states in descriptions only.
STATED_RULES = [
    # An end after its start; a window or a range of bounded length.
    (r"^(reservations\[\d+\]\.)?ends_at$", r"^must be after starts_at$"),
    (r"^to$", r"^must be after from$"),
    (r"^(reservations\[\d+\]\.)?ends_at$", r"^range must not exceed 366 days$"),
    (r"^to$", r"^the window must not exceed \d+ days$"),
    (r"^to$", r"^must be at most 366 days after from$"),
    (r"^duration$", r"^must not be longer than the window$"),
    (r"^(reservations\[\d+\]\.)?(starts_at|ends_at|from|to|since|due_at)$",
     r"^must be between the years 1 and 9999$"),
    # A policy's horizon beyond its notice; working-hours windows in order.
    (r"^policy\.max_advance$", r"^must be longer than min_notice$"),
    (r"^working_hours(\[\d+\](\.end)?)?$", r".*"),
    # Bounds of durations (their grammar is in the document).
    (r"^ttl$", r"^must be between PT1S and PT1H$"),
    (r"^offer_ttl$", r"^must be between PT1S and PT1H"),
    # A waitlist entry waits for a range not yet over.
    (r"^ends_at$", r"^the range is already over$"),
    (r"^policy\.buffer_(before|after)$", r"^must be at most P1D$"),
    (r"^policy\.(check_in_within|approval_timeout)$", r"^must be longer than zero$"),
    (r"^reminders$", r"^each must be more than zero and at most P30D$"),
    (r"^(duration|granularity)$", r"^must be minutes \(90\) or ISO 8601.*"),
    (r".*", r".*is longer than 3660 days$"),
    (r"^recurrence\.rule$", r".*"),
    # What the request names must exist in the tenant.
    (r".*", r"^no (hold|resource) [0-9a-f-]{36}$"),
    (r".*", r"^unknown resource [0-9a-f-]{36}$"),
    (r".*", r"^no such resource$"),
    (r"pool_id$", r"^no such pool$"),
    # A pool's count is at most its members now; finding a time weighs at
    # most 500 resources in all and wants as many optional ones as named.
    (r"^(requirements\[\d+\]\.)?count$", r"^must be 1 to \d+"),
    (r"^requirements$", r"^name at most 500 resources in all"),
    (r"^min_optional$", r"^must not exceed how many optional"),
    (r"^granularity$", r"^must be at most P1D$"),
    (r"^reservations\[\d+\]\.reservation_id$", r"^the booking has no reservation"),
    # A webhook target must be public (unless the operator allows
    # private ones) and reachable by its scheme.
    (r"^url$", r".*"),
    # A quota's hours in whole minutes; its subjects exist, in the form
    # of its scope; a usage's subject likewise.
    (r"^max_hours$", r"in whole minutes$"),
    (r"^subjects\[\d+\]$", r".*"),
    (r"^subject$", r"^is not a subject of a \w+ quota$"),
    # A calendar link: credentials in pairs, a sync interval in bounds,
    # publishing only to CalDAV.
    (r"^password$", r"^username and password come together$"),
    (r"^sync_every$", r"^must be from PT1M to P7D$"),
    (r"^publish$", r"^only a CalDAV calendar can be published to$"),
    # A series of at most 5,000 reservations in all.
    (r"^recurrence(\.rule)?$", r".*reservations in all.*"),
]


def _stated(errors):
    return bool(errors) and all(
        any(re.search(f, e.get("field", "")) and re.search(m, e.get("message", ""))
            for f, m in STATED_RULES)
        for e in errors
    )


@schemathesis.hook
def filter_failure(context, failure, case, response):
    if getattr(failure, "code", None) != "ST202":
        return True
    try:
        body = response.json()
    except Exception:
        return True
    if response.status_code == 422 and _stated(body.get("errors") or []):
        return False
    return True


def _instant(value):
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except (AttributeError, ValueError):
        return None


def _repair(obj, start, end):
    """Moves `end` to an hour after `start` where the pair breaks a rule."""
    if not isinstance(obj, dict):
        return
    a, b = _instant(obj.get(start)), _instant(obj.get(end))
    if a is None or b is None:
        return
    try:
        if not 1 <= a.astimezone(timezone.utc).year <= 9998:
            return
        if b <= a or b - a > timedelta(days=60):
            obj[end] = (a + timedelta(hours=1)).isoformat()
    except (OverflowError, ValueError):
        return


@schemathesis.hook
def map_case(context, case):
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return case
    if isinstance(case.body, dict):
        _repair(case.body, "starts_at", "ends_at")
        _repair(case.body, "from", "to")
        for reservation in case.body.get("reservations") or []:
            _repair(reservation, "starts_at", "ends_at")
    if isinstance(case.query, dict):
        _repair(case.query, "from", "to")
        _repair(case.query, "starts_at", "ends_at")
    return case


@schemathesis.hook
def before_call(context, case, kwargs):
    meta = case.meta
    if (meta is not None and meta.generation.mode.is_positive
            and case.headers and "Idempotency-Key" in case.headers):
        case.headers["Idempotency-Key"] = str(uuid.uuid4())
