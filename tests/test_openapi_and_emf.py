"""The committed OpenAPI document is what the code generates; EMF output carries the
documented metric names."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from slotguard.services import booking_metrics, webhook_metrics
from slotguard_local.openapi import render
from tests.conftest import ApiClient
from tests.webhook_support import Pipeline

ROOT = Path(__file__).resolve().parents[1]


def test_committed_openapi_is_in_sync_with_the_code() -> None:
    generated = render()
    committed = (ROOT / "docs" / "openapi.json").read_text()
    assert generated == committed, "run: .venv/bin/python -m slotguard_local.openapi > docs/openapi.json"
    paths = json.loads(generated)["paths"]
    assert "/appointments" in paths
    assert "post" in paths["/webhook-metrics/dead-letter-queue/redrive"]


def test_every_route_is_in_the_document() -> None:
    # Given the routes the gateway serves (the CDK app and the local stack share them)
    from slotguard.topology import API_ROUTES, ROUTES

    paths = json.loads(render())["paths"]
    # Then each has its operation in the document, the webhook receiver's included
    documented = {(method.upper(), path) for path, ops in paths.items() for method in ops}
    assert documented == {(r.method, r.path) for r in API_ROUTES}
    # And only the console's static files are left out of it
    assert {r.function for r in ROUTES if r not in API_ROUTES} == {"console"}


def test_the_webhook_receivers_operation_says_what_a_sender_needs() -> None:
    doc = json.loads(render())
    operation = doc["paths"]["/webhooks/{org_id}"]["post"]
    # It needs no bearer token: the signature authenticates
    assert operation["security"] == []
    # It takes the Standard Webhooks headers, each required, and the org in the path
    params = {(p["in"], p["name"]): p for p in operation["parameters"]}
    for header in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        assert params[("header", header)]["required"] is True, header
        assert params[("header", header)]["description"]
    assert params[("path", "org_id")]["schema"]["format"] == "uuid"
    # Its body is the signed JSON event: an object with a string type
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert body["type"] == "object" and "type" in body["required"]
    # And it documents each answer with its body
    responses = operation["responses"]
    assert set(responses) == {"202", "400", "401", "413", "503"}
    components = doc["components"]["schemas"]
    accepted = responses["202"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert set(components[accepted]["properties"]) == {"id", "status"}
    for status in ("400", "401", "413", "503"):
        assert responses[status]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    assert "Retry-After" in responses["503"]["headers"]


def emf_metric_units(output: str) -> dict[str, set[str]]:
    """Each metric name the EMF records printed carry, with the units it was given: CloudWatch
    reads `Unit` as one of its unit names (an alarm that names a unit sees only those data)."""
    units: dict[str, set[str]] = {}
    for line in output.splitlines():
        if not line.startswith("{"):
            continue
        doc = json.loads(line)
        for directive in doc.get("_aws", {}).get("CloudWatchMetrics", []):
            assert directive["Namespace"] == "Slotguard"
            for metric in directive["Metrics"]:
                units.setdefault(metric["Name"], set()).add(metric["Unit"])
    return units


def test_booking_emits_documented_metrics(api: ApiClient, capsys: pytest.CaptureFixture[str]) -> None:
    body = {"contact_id": str(uuid.uuid4()), "scheduled_at": "2034-01-01T10:00:00Z", "duration_minutes": 30}
    capsys.readouterr()
    assert api.post("/appointments", json_body=body).status == 201
    assert api.post("/appointments", json_body=body).status == 409
    units = emf_metric_units(capsys.readouterr().out)
    booked = (
        booking_metrics.ATTEMPTED,
        booking_metrics.CREATED,
        booking_metrics.CONFLICT,
        booking_metrics.LATENCY,
    )
    assert {name: units.get(name) for name in booked} == {
        booking_metrics.ATTEMPTED: {"Count"},
        booking_metrics.CREATED: {"Count"},
        booking_metrics.CONFLICT: {"Count"},
        booking_metrics.LATENCY: {"Milliseconds"},
    }


def test_webhooks_emit_documented_metrics(pipeline: Pipeline, capsys: pytest.CaptureFixture[str]) -> None:
    org_id, secret = pipeline.new_org()
    capsys.readouterr()
    pipeline.send(
        org_id,
        secret,
        "appointment.book",
        {"contact_id": str(uuid.uuid4()), "scheduled_at": "2034-02-01T10:00:00Z", "duration_minutes": 30},
    )
    status, _ = pipeline.post(
        org_id, "{}", {"webhook-id": "x", "webhook-timestamp": "1", "webhook-signature": "v1,x"}
    )
    assert status == 401
    pipeline.event_source().poll_once()
    out = capsys.readouterr().out
    units = emf_metric_units(out)
    names = set(units)
    assert {
        name: units.get(name)
        for name in (
            webhook_metrics.RECEIVED,
            webhook_metrics.REJECTED,
            webhook_metrics.PROCESSED,
            webhook_metrics.PROCESSING_TIME,
        )
    } == {
        webhook_metrics.RECEIVED: {"Count"},
        webhook_metrics.REJECTED: {"Count"},
        webhook_metrics.PROCESSED: {"Count"},
        webhook_metrics.PROCESSING_TIME: {"Milliseconds"},
    }
    rejected: Any = next(
        json.loads(line)
        for line in out.splitlines()
        if line.startswith("{") and webhook_metrics.REJECTED in line
    )
    assert rejected["reason"] == "stale_timestamp"
    readme = (ROOT / "README.md").read_text()
    for name in (*names, booking_metrics.BUSY, webhook_metrics.DEAD_LETTERED, webhook_metrics.FAILED):
        assert f"`{name}`" in readme, f"{name} is not documented in README.md"


def _emf_run(provider_class: type[Any], capsys: pytest.CaptureFixture[str]) -> tuple[list[Any], list[str]]:
    """Feed one provider a sequence of metrics (the 100-value flush, every unit spelling, the
    refusals) and return what it printed and the errors it raised."""
    from collections import defaultdict

    from aws_lambda_powertools.metrics import MetricResolution, MetricUnit

    provider = provider_class(namespace="Slotguard", service="test", metric_set={}, dimension_set={})
    errors: list[str] = []
    calls: list[tuple[Any, ...]] = [("A", MetricUnit.Count, 1), ("A", "Count", 2.5)]
    calls += [(" B ", "Milliseconds", 3)]
    calls += [("C", MetricUnit.Milliseconds, i, MetricResolution.High) for i in range(101)]
    calls += [("", "Count", 1), ("x" * 300, "Count", 1), ("D", "Count", "1"), ("D", "Parsecs", 1)]
    calls += [("D", "Count", 1, 7), ("E", "Count", True)]
    capsys.readouterr()
    for call in calls:
        try:
            provider.add_metric(*call)
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    for doc in printed:
        doc["_aws"].pop("Timestamp")
    state = {k: dict(v) if isinstance(v, defaultdict) else v for k, v in provider.metric_set.items()}
    return [*printed, state], errors


def test_the_fast_emf_provider_adds_metrics_exactly_as_powertools_does(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider

    from slotguard.observability import _SerializedEMFProvider

    ours = _emf_run(_SerializedEMFProvider, capsys)
    theirs = _emf_run(AmazonCloudWatchEMFProvider, capsys)
    assert ours == theirs
    assert len(ours[0]) == 2 and len(ours[1]) == 5  # one flush at 100 values, then the set; five refusals
