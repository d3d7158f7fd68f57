"""Locust users for `make load` (bench/load.py runs them headless): a booking mix and signed
webhooks against any slotguard API. Configured by the environment the runner sets:

LOAD_TOKEN            a member's bearer token (JWT with sub and org_id)
LOAD_ORG_ID           that org's id (the webhook route's path)
LOAD_WEBHOOK_SECRET   that org's whsec_... signing secret
LOAD_RUN              a fresh id per run: its slots lie on calendars (resource ids) of its own
LOAD_HOT_SLOTS        how many contested slots the booking mix shares (default 5)

Answers that are right for the request count as successes: 201 for a free slot, 201 or 409 for a
contested one, 200 for reads, 202 for a webhook. A 503 `busy` is a lock rejection, reported as a
failure under its own name; anything else is an error.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import uuid
from datetime import UTC, datetime
from typing import Any

from locust import FastHttpUser, constant, task
from standardwebhooks.webhooks import Webhook

from bench.load_plan import Plan

PLAN = Plan(uuid.UUID(os.environ.get("LOAD_RUN") or str(uuid.uuid4())))
TOKEN = os.environ.get("LOAD_TOKEN", "")
ORG_ID = os.environ.get("LOAD_ORG_ID", "")
SECRET = os.environ.get("LOAD_WEBHOOK_SECRET", "")
HOT_SLOTS = int(os.environ.get("LOAD_HOT_SLOTS", "5"))
# Distinct slot numbers across users and across locust processes.
_free = itertools.count(random.randrange(10) * 10_000)
_hooks = itertools.count(50_000 + random.randrange(10) * 4_000)


def _book_body(calendar: str, start: str) -> str:
    return json.dumps(
        {
            "contact_id": str(uuid.uuid4()),
            "scheduled_at": start,
            "duration_minutes": 10,
            "resource_id": PLAN.calendar(calendar),
        }
    )


class Api(FastHttpUser):
    abstract = True
    wait_time = constant(0)

    @property
    def auth(self) -> dict[str, str]:
        return {"authorization": f"Bearer {TOKEN}", "content-type": "application/json"}

    def book(self, name: str, body: str, ok: tuple[int, ...]) -> Any:
        with self.client.post(
            "/appointments", data=body, headers=self.auth, name=name, catch_response=True
        ) as r:
            if r.status_code in ok:
                r.success()
            elif r.status_code == 503:
                r.failure("busy (lock rejection)")
            else:
                r.failure(f"unexpected {r.status_code}")
            return r


class Booker(Api):
    """The booking mix: free slots, contested slots, reads."""

    weight = 3

    def on_start(self) -> None:
        self.booked: list[str] = []

    @task(4)
    def free_slot(self) -> None:
        r = self.book("POST /appointments (free slot)", _book_body("free", PLAN.slot(next(_free))), (201,))
        if r.status_code == 201:
            self.booked.append(r.json()["id"])

    @task(2)
    def contested_slot(self) -> None:
        start = PLAN.hot_slot(random.randrange(HOT_SLOTS))
        self.book("POST /appointments (contested slot)", _book_body("hot", start), (201, 409))

    @task(3)
    def read(self) -> None:
        if self.booked and random.random() < 0.5:
            self.client.get(
                f"/appointments/{random.choice(self.booked)}",
                headers=self.auth,
                name="GET /appointments/{id}",
            )
        else:
            self.client.get(
                "/appointments",
                params={"from": PLAN.slot(0), "to": PLAN.slot(144), "limit": 20},
                headers=self.auth,
                name="GET /appointments (list)",
            )


class WebhookSender(Api):
    """Signed Standard Webhooks, each an appointment.book on a free slot of the run's own calendar."""

    weight = 1

    def on_start(self) -> None:
        self.signer = Webhook(SECRET)

    @task
    def webhook(self) -> None:
        now = datetime.now(UTC)
        body = json.dumps(
            {
                "type": "appointment.book",
                "timestamp": now.isoformat().replace("+00:00", "Z"),
                "data": json.loads(_book_body("webhook", PLAN.slot(next(_hooks)))),
            },
            separators=(",", ":"),
        )
        webhook_id = f"msg_{uuid.uuid4().hex}"
        headers = {
            "content-type": "application/json",
            "webhook-id": webhook_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": self.signer.sign(webhook_id, now, body),
        }
        with self.client.post(
            f"/webhooks/{ORG_ID}",
            data=body,
            headers=headers,
            name="POST /webhooks/{org_id}",
            catch_response=True,
        ) as r:
            if r.status_code == 202:
                r.success()
            else:
                r.failure(f"unexpected {r.status_code}")


class BurstUser(Api):
    """One attempt at the one burst slot, then idle: `--users 1000` of these are 1000 concurrent
    attempts at one slot. Only used by the burst phase (bench/load.py picks it by name)."""

    wait_time = constant(3600)

    def on_start(self) -> None:
        self.book("POST /appointments (burst: one slot)", _book_body("burst", PLAN.burst_slot), (201, 409))

    @task
    def idle(self) -> None:
        return None
