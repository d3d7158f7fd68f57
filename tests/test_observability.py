"""The logger's per-invocation keys: an HTTP API function's correlation id is its request id, set
exactly as Powertools' `inject_lambda_context(correlation_id_path=API_GATEWAY_HTTP)` sets it."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from aws_lambda_powertools.logging import correlation_paths

from slotguard.observability import inject_http_api_context, logger
from slotguard_local.events import LambdaContext, http_api_event

EVENT = http_api_event("GET", "/appointments", claims={"sub": "s", "org_id": "o"})


def _keys_seen_by(decorate: Any, event: Any) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def handler(event: Any, context: Any) -> dict[str, Any]:
        seen.update(logger.get_current_keys())
        return {}

    logger.remove_keys(["correlation_id"])
    decorate(handler)(event, LambdaContext(aws_request_id="req-1"))
    seen.pop("cold_start", None)  # true only for the first invocation of the process
    return seen


@pytest.mark.parametrize(
    "event",
    [
        EVENT,
        {**EVENT, "requestContext": {**EVENT["requestContext"], "requestId": None}},
        {**EVENT, "requestContext": "not an object"},
        {k: v for k, v in EVENT.items() if k != "requestContext"},
    ],
)
def test_http_api_functions_log_with_the_request_id_as_powertools_sets_it(event: dict[str, Any]) -> None:
    powertools = logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
    theirs = _keys_seen_by(powertools, copy.deepcopy(event))
    ours = _keys_seen_by(inject_http_api_context, copy.deepcopy(event))
    assert ours == theirs
    if event is EVENT:
        assert theirs["correlation_id"] == EVENT["requestContext"]["requestId"]
