"""A model test of the booking API over HTTP: hypothesis drives random book / cancel /
reschedule / list / availability / idempotent-retry sequences against the local stack beside
an in-memory model. After every step: no two active appointments of a calendar overlap, the
API's answers equal the model's, every 409 names exactly the real overlaps."""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from tests.e2e.stack_process import StackProcess, http, running_stack

pytestmark = pytest.mark.e2e

# The budget in `make test`; SLOTGUARD_MODEL_EXAMPLES=200 for a longer run.
EXAMPLES = int(os.environ.get("SLOTGUARD_MODEL_EXAMPLES", "30"))
DAY = datetime(2034, 1, 2, 8, tzinfo=UTC)
STARTS = st.integers(min_value=0, max_value=24).map(lambda q: DAY + timedelta(minutes=15 * q))
DURATIONS = st.sampled_from([15, 30, 45, 60, 90, 120])


@dataclass
class Appt:
    id: str
    calendar: int
    start: datetime
    end: datetime
    status: str = "scheduled"


def overlaps(a_start: datetime, a_end: datetime, b_start: datetime, b_end: datetime) -> bool:
    return a_start < b_end and b_start < a_end


class BookingModel(RuleBasedStateMachine):
    api: str = ""
    token: str = ""

    appointments = Bundle("appointments")
    keys = Bundle("keys")

    def __init__(self) -> None:
        super().__init__()
        self.calendars = [str(uuid.uuid4()), str(uuid.uuid4())]  # a fresh pair per example
        self.model: dict[str, Appt] = {}

    # -- helpers -----------------------------------------------------------------------------
    def call(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        return http(method, f"{self.api}{path}", token=self.token, **kw)

    def active_overlaps(
        self, calendar: int, start: datetime, end: datetime, ignore: str | None = None
    ) -> set[str]:
        return {
            a.id
            for a in self.model.values()
            if a.calendar == calendar
            and a.status == "scheduled"
            and a.id != ignore
            and overlaps(a.start, a.end, start, end)
        }

    def body(self, calendar: int, start: datetime, minutes: int) -> dict[str, Any]:
        return {
            "contact_id": "00000000-0000-4000-8000-000000000001",
            "resource_id": self.calendars[calendar],
            "scheduled_at": start.isoformat(),
            "duration_minutes": minutes,
        }

    def record(self, answer: dict[str, Any], calendar: int) -> Appt:
        appt = Appt(
            answer["id"],
            calendar,
            datetime.fromisoformat(answer["scheduled_at"]),
            datetime.fromisoformat(answer["ends_at"]),
            answer["status"],
        )
        self.model[appt.id] = appt
        return appt

    # -- rules -------------------------------------------------------------------------------
    @rule(target=appointments, calendar=st.integers(0, 1), start=STARTS, minutes=DURATIONS)
    def book(self, calendar: int, start: datetime, minutes: int) -> Any:
        expected_conflicts = self.active_overlaps(calendar, start, start + timedelta(minutes=minutes))
        status, answer = self.call("POST", "/appointments", body=self.body(calendar, start, minutes))
        if expected_conflicts:
            assert status == 409, answer
            assert {c["id"] for c in answer["error"]["details"]["conflicts"]} == expected_conflicts
            return None
        assert status == 201, answer
        return self.record(answer, calendar).id

    @rule(target=keys, calendar=st.integers(0, 1), start=STARTS, minutes=DURATIONS)
    def book_with_key(self, calendar: int, start: datetime, minutes: int) -> Any:
        key = f"model-{uuid.uuid4()}"
        body = self.body(calendar, start, minutes)
        expected_conflicts = self.active_overlaps(calendar, start, start + timedelta(minutes=minutes))
        status, answer = self.call("POST", "/appointments", body=body, headers={"Idempotency-Key": key})
        if expected_conflicts:
            assert status == 409, answer
            return None
        assert status == 201, answer
        self.record(answer, calendar)
        return (key, body, answer)

    @rule(entry=keys)
    def retry_with_the_same_key(self, entry: Any) -> None:
        if entry is None:
            return
        key, body, first = entry
        status, answer = self.call("POST", "/appointments", body=body, headers={"Idempotency-Key": key})
        # The replay is the first answer, whatever happened since (a cancel, a reschedule)
        assert status == 201, answer
        assert answer["id"] == first["id"]

    @rule(appt_id=appointments)
    def cancel(self, appt_id: str | None) -> None:
        if appt_id is None:
            return
        status, answer = self.call("POST", f"/appointments/{appt_id}/cancel", body={"reason": "model"})
        assert status == 200, answer
        assert answer["status"] == "cancelled"
        self.model[appt_id].status = "cancelled"

    @rule(target=appointments, appt_id=appointments, start=STARTS, minutes=st.none() | DURATIONS)
    def reschedule(self, appt_id: str | None, start: datetime, minutes: int | None) -> Any:
        if appt_id is None:
            return None
        old = self.model[appt_id]
        length = timedelta(minutes=minutes) if minutes else old.end - old.start
        move = {"scheduled_at": start.isoformat(), **({"duration_minutes": minutes} if minutes else {})}
        status, answer = self.call("POST", f"/appointments/{appt_id}/reschedule", body=move)
        if old.status != "scheduled":
            assert status == 409 and answer["error"]["code"] == "not_schedulable", answer
            return None
        expected_conflicts = self.active_overlaps(old.calendar, start, start + length, ignore=appt_id)
        if expected_conflicts:
            assert status == 409, answer
            assert {c["id"] for c in answer["error"]["details"]["conflicts"]} == expected_conflicts
            return None
        assert status == 200, answer
        assert answer["previous"]["status"] == "cancelled"
        assert answer["previous"]["rescheduled_to"] == answer["appointment"]["id"]
        old.status = "cancelled"
        return self.record(answer["appointment"], old.calendar).id

    @rule(calendar=st.integers(0, 1), start=STARTS, minutes=DURATIONS)
    def check_availability(self, calendar: int, start: datetime, minutes: int) -> None:
        expected = self.active_overlaps(calendar, start, start + timedelta(minutes=minutes))
        status, answer = self.call(
            "GET",
            f"/availability/check?start={start.isoformat().replace('+', '%2B')}"
            f"&duration_minutes={minutes}&resource_id={self.calendars[calendar]}",
        )
        assert status == 200, answer
        assert answer["available"] is (not expected)
        assert {c["id"] for c in answer["conflicts"]} == expected

    # -- invariants --------------------------------------------------------------------------
    def listed(self, calendar: int) -> list[dict[str, Any]]:
        items, cursor = [], None
        while True:
            query = f"/appointments?resource_id={self.calendars[calendar]}&limit=4"
            status, page = self.call("GET", query + (f"&cursor={cursor}" if cursor else ""))
            assert status == 200, page
            items.extend(page["items"])
            cursor = page["next_cursor"]
            if not cursor:
                return items

    @invariant()
    def the_api_lists_what_the_model_holds_and_nothing_overlaps(self) -> None:
        for calendar in (0, 1):
            items = self.listed(calendar)
            assert {(a["id"], a["status"]) for a in items} == {
                (a.id, a.status) for a in self.model.values() if a.calendar == calendar
            }
            active = sorted(
                (datetime.fromisoformat(a["scheduled_at"]), datetime.fromisoformat(a["ends_at"]))
                for a in items
                if a["status"] == "scheduled"
            )
            for (_, end), (next_start, _) in itertools.pairwise(active):
                assert end <= next_start, active


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProcess]:
    with running_stack(tmp_path_factory.mktemp("model") / ".local") as running:
        yield running


def test_the_booking_api_behaves_like_its_model(stack: StackProcess) -> None:
    BookingModel.api = stack.info["api_url"]
    BookingModel.token = stack.info["orgs"][0]["token"]
    run_state_machine_as_test(
        BookingModel, settings=settings(max_examples=EXAMPLES, stateful_step_count=25, deadline=None)
    )
