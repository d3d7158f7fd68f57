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


def emf_metric_names(output: str) -> set[str]:
    names: set[str] = set()
    for line in output.splitlines():
        if not line.startswith("{"):
            continue
        doc = json.loads(line)
        for directive in doc.get("_aws", {}).get("CloudWatchMetrics", []):
            assert directive["Namespace"] == "Slotguard"
            names.update(m["Name"] for m in directive["Metrics"])
    return names


def test_booking_emits_documented_metrics(api: ApiClient, capsys: pytest.CaptureFixture[str]) -> None:
    body = {"contact_id": str(uuid.uuid4()), "scheduled_at": "2034-01-01T10:00:00Z", "duration_minutes": 30}
    capsys.readouterr()
    assert api.post("/appointments", json_body=body).status == 201
    assert api.post("/appointments", json_body=body).status == 409
    names = emf_metric_names(capsys.readouterr().out)
    assert {
        booking_metrics.ATTEMPTED,
        booking_metrics.CREATED,
        booking_metrics.CONFLICT,
        booking_metrics.LATENCY,
    } <= names


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
    names = emf_metric_names(out)
    assert {
        webhook_metrics.RECEIVED,
        webhook_metrics.REJECTED,
        webhook_metrics.PROCESSED,
        webhook_metrics.PROCESSING_TIME,
    } <= names
    rejected: Any = next(
        json.loads(line)
        for line in out.splitlines()
        if line.startswith("{") and webhook_metrics.REJECTED in line
    )
    assert rejected["reason"] == "stale_timestamp"
    readme = (ROOT / "README.md").read_text()
    for name in (*names, booking_metrics.BUSY, webhook_metrics.DEAD_LETTERED, webhook_metrics.FAILED):
        assert f"`{name}`" in readme, f"{name} is not documented in README.md"
