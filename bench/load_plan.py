"""The calendars and slots of one `make load` run, derived from its id (LOAD_RUN), shared by the
locust users (bench/locustfile.py) and the runner that checks what they stored (bench/load.py).
No locust import here: locust patches the process it is imported in (gevent)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta


@dataclass(frozen=True)
class Plan:
    run: uuid.UUID

    def calendar(self, name: str) -> str:
        """A resource id of this run only: free slots, contested ones, webhooks, the burst."""
        return str(uuid.uuid5(self.run, name))

    @property
    def base(self) -> datetime:
        """Inside the booking window, a day range of its own per run."""
        return datetime(2150, 1, 1, tzinfo=UTC) + timedelta(days=(self.run.int % 4_000) * 3)

    def slot(self, n: int) -> str:
        return (self.base + timedelta(minutes=10 * (n % 100_000))).isoformat()

    def hot_slot(self, i: int) -> str:
        return (self.base - timedelta(hours=1 + i)).isoformat()

    @property
    def burst_slot(self) -> str:
        return (self.base - timedelta(days=1)).isoformat()
