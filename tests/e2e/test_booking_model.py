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
from zoneinfo import ZoneInfo

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


# -- calendars with rules (issue 20, item 5) ---------------------------------------------------

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kathmandu", "Australia/Lord_Howe"]
WEEKDAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
# Candidate opening intervals (local wall times, disjoint; two of them touch).
INTERVALS = [
    ("00:00", "04:00"),
    ("06:00", "10:00"),
    ("10:00", "12:30"),
    ("13:00", "18:00"),
    ("20:00", "24:00"),
]
SEARCH_FROM, SEARCH_TO = DAY, DAY + timedelta(hours=8)  # the STARTS (and a little more)


@st.composite
def calendar_rules(draw: st.DrawFn) -> dict[str, Any]:
    """Random rules: a zone, weekly hours (some weekdays closed), maybe an override of the test
    day's local date, buffers, durations. No notice or horizon (the model's days are years ahead)."""

    def hours() -> list[dict[str, str]]:
        chosen = draw(st.lists(st.sampled_from(INTERVALS), unique=True, max_size=3))
        return [{"start": s, "end": e} for s, e in sorted(chosen)]

    rules: dict[str, Any] = {"time_zone": draw(st.sampled_from(ZONES))}
    if draw(st.booleans()):
        rules["weekly_hours"] = {d: hours() for d in WEEKDAY_NAMES if draw(st.integers(0, 5)) > 0}
    if draw(st.booleans()):
        local_day = DAY.astimezone(ZoneInfo(rules["time_zone"])).date()
        rules["date_overrides"] = {local_day.isoformat(): hours()}
    rules["buffer_before_minutes"] = draw(st.sampled_from([0, 0, 5, 15]))
    rules["buffer_after_minutes"] = draw(st.sampled_from([0, 0, 10, 15]))
    low = draw(st.sampled_from([15, 30]))
    rules["min_duration_minutes"] = low
    rules["max_duration_minutes"] = draw(st.sampled_from([60, 90, 1440]))
    rules["duration_multiple_minutes"] = draw(st.sampled_from([None, 15, 30]))
    return rules


def _wall(day: Any, hhmm: str, tz: ZoneInfo) -> datetime:
    """A local wall time of a date (24:00: the next date's midnight) as a UTC instant."""
    h, m = map(int, hhmm.split(":"))
    return (
        datetime.combine(day + timedelta(days=h // 24), datetime.min.time(), tz)
        .replace(hour=h % 24, minute=m)
        .astimezone(UTC)
    )


def open_stretches(
    rules: dict[str, Any] | None, start: datetime, end: datetime
) -> list[tuple[datetime, datetime]]:
    """The model of _open_hours(): per local date [start, end] touches, that date's intervals
    (its override, else its weekday's; no weekly hours: all day) clipped to the date, merged."""
    if rules is None or ("weekly_hours" not in rules and not rules.get("date_overrides")):
        return [(datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC))]
    tz = ZoneInfo(rules["time_zone"])
    day, last = start.astimezone(tz).date(), end.astimezone(tz).date()
    spans: list[tuple[datetime, datetime]] = []
    while day <= last:
        overrides = rules.get("date_overrides", {})
        if day.isoformat() in overrides:
            hours = overrides[day.isoformat()]
        elif "weekly_hours" in rules:
            hours = rules["weekly_hours"].get(WEEKDAY_NAMES[day.weekday()], [])
        else:
            hours = [{"start": "00:00", "end": "24:00"}]
        day_start = datetime.combine(day, datetime.min.time(), tz).astimezone(UTC)
        day_end = datetime.combine(day + timedelta(days=1), datetime.min.time(), tz).astimezone(UTC)
        for iv in hours:
            s, e = max(_wall(day, iv["start"], tz), day_start), min(_wall(day, iv["end"], tz), day_end)
            if s < e:
                spans.append((s, e))
        day += timedelta(days=1)
    merged: list[tuple[datetime, datetime]] = []
    for s, e in sorted(spans):
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return merged


def rule_broken(rules: dict[str, Any] | None, start: datetime, minutes: int) -> str | None:
    """The model of _rule_violation() (no notice or horizon here)."""
    if rules is None:
        return None
    multiple = rules.get("duration_multiple_minutes")
    if (
        minutes < rules["min_duration_minutes"]
        or minutes > rules["max_duration_minutes"]
        or (multiple and minutes % multiple)
    ):
        return "duration_not_allowed"
    end = start + timedelta(minutes=minutes)
    if not any(s <= start and end <= e for s, e in open_stretches(rules, start, end)):
        return "outside_hours"
    return None


@dataclass
class Booked:
    id: str
    calendar: int
    start: datetime
    end: datetime
    blocked: tuple[datetime, datetime]
    rules_version: int | None
    status: str = "scheduled"


class RulesModel(RuleBasedStateMachine):
    """Bookings on two calendars whose random rules change under them: every answer is the
    model's (422 with the rule's code, 409 naming the padded overlaps, 201 recording the rules'
    version), and after every step availability and slots equal the rules intersected with the
    free time."""

    api: str = ""
    token: str = ""
    admin_token: str = ""

    appointments = Bundle("ruled_appointments")

    def __init__(self) -> None:
        super().__init__()
        self.calendars = [str(uuid.uuid4()), str(uuid.uuid4())]
        self.rules: list[dict[str, Any] | None] = [None, None]
        self.versions = [0, 0]
        self.model: dict[str, Booked] = {}

    def call(self, method: str, path: str, *, admin: bool = False, **kw: Any) -> tuple[int, Any]:
        return http(method, f"{self.api}{path}", token=self.admin_token if admin else self.token, **kw)

    def padded(self, calendar: int, start: datetime, end: datetime) -> tuple[datetime, datetime]:
        rules = self.rules[calendar] or {}
        return (
            start - timedelta(minutes=rules.get("buffer_before_minutes", 0)),
            end + timedelta(minutes=rules.get("buffer_after_minutes", 0)),
        )

    def blocking(self, calendar: int, start: datetime, end: datetime, ignore: str | None = None) -> set[str]:
        lo, hi = self.padded(calendar, start, end)
        return {
            b.id
            for b in self.model.values()
            if b.calendar == calendar
            and b.status == "scheduled"
            and b.id != ignore
            and overlaps(b.blocked[0], b.blocked[1], lo, hi)
        }

    @rule(calendar=st.integers(0, 1), rules=calendar_rules())
    def set_rules(self, calendar: int, rules: dict[str, Any]) -> None:
        status, answer = self.call(
            "PUT", f"/calendars/{self.calendars[calendar]}/rules", admin=True, body=rules
        )
        assert status == 200, answer
        self.rules[calendar] = rules
        self.versions[calendar] += 1
        assert answer["calendar"]["version"] == self.versions[calendar]
        # The answer lists the appointments the new rules break; none was changed
        active = sorted(
            (b for b in self.model.values() if b.calendar == calendar and b.status == "scheduled"),
            key=lambda b: (b.start, b.id),
        )
        gap = timedelta(minutes=rules["buffer_before_minutes"] + rules["buffer_after_minutes"])
        expected = 0
        for i, b in enumerate(active):
            minutes = int((b.end - b.start).total_seconds() // 60)
            neighbours = (i > 0 and active[i - 1].end + gap > b.start) or (
                i + 1 < len(active) and b.end + gap > active[i + 1].start
            )
            expected += bool(rule_broken(rules, b.start, minutes) or neighbours)
        assert answer["violations"]["count"] == expected, (answer["violations"], rules)

    @rule(target=appointments, calendar=st.integers(0, 1), start=STARTS, minutes=DURATIONS)
    def book(self, calendar: int, start: datetime, minutes: int) -> Any:
        body = {
            "contact_id": str(uuid.uuid4()),
            "resource_id": self.calendars[calendar],
            "scheduled_at": start.isoformat(),
            "duration_minutes": minutes,
        }
        status, answer = self.call("POST", "/appointments", body=body)
        end = start + timedelta(minutes=minutes)
        if broken := rule_broken(self.rules[calendar], start, minutes):
            assert status == 422 and answer["error"]["code"] == broken, (answer, self.rules[calendar])
            assert answer["error"]["details"]["rules_version"] == self.versions[calendar]
            return None
        if expected := self.blocking(calendar, start, end):
            assert status == 409, answer
            assert {c["id"] for c in answer["error"]["details"]["conflicts"]} == expected
            return None
        assert status == 201, (answer, self.rules[calendar])
        assert answer["rules_version"] == (self.versions[calendar] or None)
        self.model[answer["id"]] = Booked(
            answer["id"], calendar, start, end, self.padded(calendar, start, end), answer["rules_version"]
        )
        return answer["id"]

    @rule(appt_id=appointments)
    def cancel(self, appt_id: str | None) -> None:
        if appt_id is None:
            return
        status, answer = self.call("POST", f"/appointments/{appt_id}/cancel", body={})
        assert status == 200, answer
        self.model[appt_id].status = "cancelled"

    @rule(target=appointments, appt_id=appointments, start=STARTS)
    def reschedule(self, appt_id: str | None, start: datetime) -> Any:
        if appt_id is None:
            return None
        old = self.model[appt_id]
        minutes = int((old.end - old.start).total_seconds() // 60)
        status, answer = self.call(
            "POST", f"/appointments/{appt_id}/reschedule", body={"scheduled_at": start.isoformat()}
        )
        if old.status != "scheduled":
            assert status == 409 and answer["error"]["code"] == "not_schedulable", answer
            return None
        end = start + timedelta(minutes=minutes)
        if broken := rule_broken(self.rules[old.calendar], start, minutes):
            assert status == 422 and answer["error"]["code"] == broken, answer
            return None
        if expected := self.blocking(old.calendar, start, end, ignore=appt_id):
            assert status == 409, answer
            assert {c["id"] for c in answer["error"]["details"]["conflicts"]} == expected
            return None
        assert status == 200, answer
        old.status = "cancelled"
        new = answer["appointment"]
        self.model[new["id"]] = Booked(
            new["id"], old.calendar, start, end, self.padded(old.calendar, start, end), new["rules_version"]
        )
        return new["id"]

    @invariant()
    def availability_and_slots_are_the_rules_intersected_with_the_free_time(self) -> None:
        for calendar in (0, 1):
            rules = self.rules[calendar]
            # slots: 30 minutes every 15, over the model's window
            query = (
                f"/availability/slots?from={SEARCH_FROM.isoformat().replace('+', '%2B')}"
                f"&to={SEARCH_TO.isoformat().replace('+', '%2B')}&duration_minutes=30&step_minutes=15"
                f"&resource_id={self.calendars[calendar]}"
            )
            status, answer = self.call("GET", query)
            assert status == 200, answer
            got = [datetime.fromisoformat(s["start"]) for s in answer["slots"]]
            expected = []
            if rule_broken(rules, SEARCH_FROM, 30) != "duration_not_allowed":
                step, length = timedelta(minutes=15), timedelta(minutes=30)
                for lo, hi in open_stretches(rules, SEARCH_FROM, SEARCH_TO):
                    first = max(lo, SEARCH_FROM)
                    at = first
                    while at + length <= min(hi, SEARCH_TO):
                        if not self.blocking(calendar, at, at + length):
                            expected.append(at)
                        at += step
            assert got == sorted(expected), (rules, got, expected)
            # availability at one start: the same answer a booking would get
            start = DAY + timedelta(hours=2)
            status, check = self.call(
                "GET",
                f"/availability/check?start={start.isoformat().replace('+', '%2B')}&duration_minutes=30"
                f"&resource_id={self.calendars[calendar]}",
            )
            assert status == 200, check
            broken = rule_broken(rules, start, 30)
            blocking = self.blocking(calendar, start, start + timedelta(minutes=30))
            assert check["available"] is (not broken and not blocking), (check, rules)
            assert (check["rule_violation"] or {}).get("code") == broken
            assert {c["id"] for c in check["conflicts"]} == blocking

    @invariant()
    def no_two_blocked_times_overlap(self) -> None:
        # (each accepted booking was checked against the rules of the version it recorded: book())
        active: dict[int, list[Booked]] = {0: [], 1: []}
        for b in self.model.values():
            if b.status == "scheduled":
                active[b.calendar].append(b)
        for items in active.values():
            ordered = sorted(items, key=lambda b: b.blocked)
            for first, second in itertools.pairwise(ordered):
                assert first.blocked[1] <= second.blocked[0], (first, second)


def test_bookings_follow_their_calendars_random_rules(stack: StackProcess) -> None:
    RulesModel.api = stack.info["api_url"]
    RulesModel.token = stack.info["orgs"][0]["token"]
    RulesModel.admin_token = stack.info["orgs"][0]["admin_token"]
    run_state_machine_as_test(
        RulesModel, settings=settings(max_examples=EXAMPLES, stateful_step_count=25, deadline=None)
    )
