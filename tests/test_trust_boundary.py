"""The trust boundary the README's security section states (issue 19, item 11): what row-level
security and the function-only application role protect, and what they do not. The protections
are tested in test_booking_validation_and_tenancy.py; this pins the documented limit, so that a
change of the boundary (per-tenant logins, a verified tenant assertion) changes these tests and
the README together."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg

from tests.conftest import ROOT


def test_the_app_login_acts_for_whichever_org_it_names(pg: Any) -> None:
    # Given an appointment of org A, booked through the API functions
    org_a = str(uuid.uuid4())
    with psycopg.connect(pg.app_url, autocommit=True) as conn:
        booked = conn.execute(
            "SELECT slotguard.book_appointment_with_lock(%s, 'user:a', %s, NULL, %s, 30)",
            (org_a, uuid.uuid4(), "2031-03-03T10:00:00Z"),
        ).fetchone()[0]
        appointment_id = booked["appointment"]["id"]
    # When a session of the application role that no user of org A is behind (a compromised
    # function) names org A as the argument
    with psycopg.connect(pg.app_url, autocommit=True) as conn:
        cancelled = conn.execute(
            "SELECT slotguard.cancel_appointment(%s, 'intruder', %s, 'not asked by org A')",
            (org_a, appointment_id),
        ).fetchone()[0]
    # Then the database acts for org A: nothing it can check travels with the call (the README's
    # "what it does not protect"); only the audit trail shows who did it
    assert cancelled["status"] == "cancelled"
    with psycopg.connect(pg.admin_url) as conn:
        actors = [
            r[0]
            for r in conn.execute(
                "SELECT actor FROM slotguard.appointment_audit WHERE appointment_id = %s ORDER BY id",
                (appointment_id,),
            )
        ]
    assert actors == ["user:a", "intruder"]


def test_the_readme_states_the_boundary_and_decisions_the_choice() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### The trust boundary", 1)[1].split("\n## ", 1)[0]
    for claim in ("What this protects", "What it does not protect", "What would close that"):
        assert claim in section
    assert "Per-tenant credentials" in section
    assert "signed tenant assertion" in section
    assert (
        "## Tenant isolation: the functions are the trust boundary"
        in (ROOT / "docs/decisions.md").read_text()
    )
