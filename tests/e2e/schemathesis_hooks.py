"""Schemathesis hooks for tests/e2e/test_contract.py, loaded through SCHEMATHESIS_HOOKS.

`valid_request_refusal_is_documented`: an operation whose 422 response lists
`x-valid-request-refusals` (POST /appointments: the codes of what no JSON Schema can state, an
Idempotency-Key's earlier body, the clock, the calendar's rules) may answer a request valid by
its schema with a 422 of one of those codes, or a `validation_error` whose every field error is
at a place `x-valid-request-error-locs` lists (the body: text PostgreSQL cannot store, nesting;
metadata: its size as stored). Any other 422 to such a request (a `validation_error` elsewhere:
the schema and the validator disagree; a code the document does not list) is a failure.
schemathesis.toml lets 422 pass positive_data_acceptance for that operation; this check is
what narrows it."""

from __future__ import annotations

import json
from typing import Any

import schemathesis

REFUSALS = "x-valid-request-refusals"
ERROR_LOCS = "x-valid-request-error-locs"


@schemathesis.check
def valid_request_refusal_is_documented(ctx: Any, response: Any, case: Any) -> bool | None:
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code != 422:
        return None
    doc = (case.operation.definition.raw.get("responses") or {}).get("422", {})
    documented, locs = doc.get(REFUSALS), doc.get(ERROR_LOCS) or []
    if documented is None:
        return None
    try:
        error = json.loads(response.content)["error"]
        code, errors = error["code"], error["details"].get("errors") or []
    except (ValueError, KeyError, TypeError, AttributeError):
        code, errors = None, []
    if code in documented:
        return None
    if code == "validation_error" and errors and all(e.get("loc") in locs for e in errors):
        return None
    raise AssertionError(
        f"A request valid by the schema was refused 422 with code {code!r}; for valid requests "
        f"{case.operation.label} documents only {', '.join(documented)} ({REFUSALS}), and"
        f" validation_error at {locs} ({ERROR_LOCS})\nResponse: {response.content[:500]!r}"
    )
