"""The dead-letter redrive (POST /webhook-metrics/dead-letter-queue/redrive) in bounded batches:
many dead letters, a processor running meanwhile, and SQS failing under it. Real Postgres as the
application role, SQS on moto's server."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from typing import Any

import psycopg
import pytest

from slotguard_local.events import LambdaContext
from slotguard_local.functions import load_function
from tests.conftest import ApiClient, log_records
from tests.webhook_support import MAX_ATTEMPTS, Pipeline

REDRIVE = "/webhook-metrics/dead-letter-queue/redrive"


class SimulatedCrash(BaseException):
    """The metrics function dying (a timeout, a killed container): nothing after it runs."""


def seed_dead_letters(admin_url: str, org_id: str, n: int, event_type: str = "invoice.paid") -> list[str]:
    with psycopg.connect(admin_url) as conn:
        rows = conn.execute(
            """INSERT INTO slotguard.webhook_delivery_log
                 (org_id, job_id, event_type, event_data, status, attempts, max_attempts, created_at,
                  last_attempt_at, error_message, outcome)
               SELECT %s, 'dead_' || lpad(i::text, 5, '0'), %s,
                      jsonb_build_object('type', %s::text, 'data', jsonb_build_object('n', i)),
                      'dead_letter', 3, 3, now() - interval '1 hour', now() - interval '1 hour',
                      'RetriableFailure: dependency down', 'gave_up'
                 FROM generate_series(1, %s) AS i
               RETURNING job_id""",
            (org_id, event_type, event_type, n),
        ).fetchall()
    return [r[0] for r in rows]


def mark_as_being_redriven(admin_url: str, org_id: str, job_ids: list[str], seconds_ago: int) -> None:
    """These dead letters as a redrive leaves them between marking and settling: pending, marked
    `seconds_ago` (over 120 s, REDRIVE_UNCONFIRMED_AFTER_S: that redrive is taken as gone; under it,
    as still running)."""
    with psycopg.connect(admin_url) as conn:
        conn.execute(
            "UPDATE slotguard.webhook_delivery_log SET status = 'pending',"
            " redrive_marked_at = now() - %s * interval '1 second' WHERE org_id = %s AND job_id = ANY(%s)",
            (seconds_ago, org_id, job_ids),
        )


def queued_ids(pipeline: Pipeline) -> Counter[str]:
    """Every message on the main queue, by webhook id (received and deleted)."""
    seen: Counter[str] = Counter()
    while True:
        got = pipeline.sqs.receive_message(
            QueueUrl=pipeline.queues.main_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
        ).get("Messages", [])
        if not got:
            return seen
        for m in got:
            seen[m["MessageAttributes"]["webhook_id"]["StringValue"]] += 1
        pipeline.sqs.delete_message_batch(
            QueueUrl=pipeline.queues.main_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)],
        )


def redrive_all(admin: ApiClient, body: dict[str, Any] | None = None) -> list[Any]:
    """Call the redrive until its answer says there is nothing more, following next_after. A 429
    (the org's redriven deliveries at their cap) is waited out, polling sooner than its
    Retry-After, and not listed."""
    answers = []
    request = dict(body or {})
    deadline = time.monotonic() + 120
    for _ in range(1000):
        started = time.monotonic()
        res = admin.post(REDRIVE, json_body=request)
        if res.status == 429 and time.monotonic() < deadline:
            time.sleep(0.5)
            continue
        answers.append((res.status, res.body, time.monotonic() - started))
        if res.status != 200 or res.body["next_after"] is None:
            return answers
        request = {**request, "after": res.body["next_after"]}
    raise AssertionError("the redrive never finished")


@pytest.fixture
def metrics_fn(pipeline: Pipeline) -> Any:
    return load_function("metrics")


def test_2000_dead_letters_are_redriven_in_bounded_batches_each_once_processor_never_blocked(
    pipeline: Pipeline, metrics_fn: Any
) -> None:
    # Given an org with 2,000 dead letters
    org_id, _ = pipeline.new_org()
    jobs = seed_dead_letters(pipeline.admin_url, org_id, 2000)
    admin = ApiClient(metrics_fn, {"sub": "ops", "org_id": org_id, "role": "admin"})
    # And the processor running on the queue meanwhile, each invocation timed, each message noted
    durations: list[float] = []
    messages: dict[str, set[str]] = {}  # webhook id -> the SQS message ids that carried it

    def timed_container() -> Any:
        handler = pipeline.processor_container()

        def invoke(event: Any, context: Any) -> Any:
            for record in event["Records"]:
                job = record["messageAttributes"]["webhook_id"]["stringValue"]
                messages.setdefault(job, set()).add(record["messageId"])
            started = time.monotonic()
            try:
                return handler(event, context)
            finally:
                durations.append(time.monotonic() - started)

        return invoke

    source = pipeline.event_source(batch_size=10, max_concurrency=2)
    source._new_container = timed_container
    source.start()
    try:
        # When an admin redrives all of them, following each answer's next_after
        answers = redrive_all(admin)
        # And the processor works through what was redriven
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if Counter(r["status"] for r in pipeline.rows(org_id)) == {"completed": 2000}:
                break
            time.sleep(0.2)
    finally:
        source.stop()
    # Then every answer was a 200 within the API's time, each a bounded batch saying where to go on
    assert [status for status, _, _ in answers] == [200] * len(answers)
    assert len(answers) > 1
    assert all(seconds < 15 for _, _, seconds in answers)
    assert all(body["redriven"] <= 1000 for _, body, _ in answers)
    assert answers[-1][1]["next_after"] is None
    # And each dead letter was redriven exactly once: in one answer, audited once, one message,
    # processed once
    redriven = [job for _, body, _ in answers for job in body["job_ids"]]
    assert sorted(redriven) == jobs
    assert sum(body["redriven"] for _, body, _ in answers) == 2000
    rows = pipeline.rows(org_id)
    assert Counter((r["status"], r["attempts"], r["outcome"]) for r in rows) == {
        ("completed", 4, "ignored"): 2000
    }
    assert all(r["redrive_marked_at"] is None for r in rows)
    assert sorted(messages) == jobs
    assert {len(ids) for ids in messages.values()} == {1}
    assert source.stats.reported_failures == 0
    with psycopg.connect(pipeline.admin_url) as conn:
        audits = conn.execute(
            "SELECT job_id, count(*) FROM slotguard.webhook_redrive_audit WHERE org_id = %s GROUP BY job_id",
            (org_id,),
        ).fetchall()
    assert len(audits) == 2000
    assert {n for _, n in audits} == {1}
    # And the processor was never held up by the redrive: no record failed, and no invocation
    # came near the 5 s statement timeout a claim waiting on a redrive's locked rows hits (the
    # bound leaves room for a loaded machine; unblocked invocations take tens of milliseconds)
    assert max(durations) < 4.5, sorted(durations)[-5:]
    assert sorted(durations)[len(durations) // 2] < 0.5


def test_no_transaction_is_open_while_the_redrive_calls_sqs(pipeline: Pipeline, metrics_fn: Any) -> None:
    # Given 25 dead letters, and a look at the database each time the redrive calls SendMessageBatch
    org_id, _ = pipeline.new_org()
    seed_dead_letters(pipeline.admin_url, org_id, 25)
    open_transactions: list[int] = []

    def look(**_: Any) -> None:
        with psycopg.connect(pipeline.admin_url) as conn:
            [n] = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE usename = 'slotguard_app'"
                " AND state LIKE 'idle in transaction%%'"
            ).fetchone()
            open_transactions.append(n)
            # and no row of the org is locked: a claim would not wait
            conn.execute("SET lock_timeout = '100ms'")
            conn.execute(
                "SELECT 1 FROM slotguard.webhook_delivery_log WHERE org_id = %s FOR UPDATE", (org_id,)
            )

    metrics_fn.service._queue._sqs.meta.events.register("before-send.sqs.SendMessageBatch", look)
    admin = ApiClient(metrics_fn, {"sub": "ops", "org_id": org_id, "role": "admin"})
    # When they are redriven
    [(status, body, _)] = redrive_all(admin)
    # Then they went in three batches of at most ten, none of them while a transaction was open
    assert (status, body["redriven"]) == (200, 25)
    assert open_transactions == [0, 0, 0]
    assert sorted(queued_ids(pipeline).values()) == [1] * 25


@pytest.mark.parametrize("after", [2**53, 2**63, 1210963829365742764032])
def test_an_after_past_the_largest_row_id_is_422_and_redrives_nothing(
    pipeline: Pipeline, metrics_fn: Any, after: int
) -> None:
    # Given a dead letter
    org_id, _ = pipeline.new_org()
    seed_dead_letters(pipeline.admin_url, org_id, 1)
    admin = ApiClient(metrics_fn, {"sub": "ops", "org_id": org_id, "role": "admin"})
    # When a redrive continues after a number no row id can be (past 2**53 - 1, the largest integer
    # a JSON reader takes exactly; past PostgreSQL's bigint, schemathesis's random seed got a 500)
    res = admin.post(REDRIVE, json_body={"after": after, "job_ids": ["0", "0"]})
    # Then it is a 422 naming the field, and nothing was redriven
    assert res.status == 422, res.body
    assert res.body["error"]["code"] == "validation_error"
    assert [e["loc"] for e in res.body["error"]["details"]["errors"]] == [["body", "after"]]
    assert pipeline.queues.depth(pipeline.sqs) == 0
    assert {r["status"] for r in pipeline.rows(org_id)} == {"dead_letter"}
    # And the largest row id is still a valid place to continue from
    largest = admin.post(REDRIVE, json_body={"after": 2**53 - 1})
    assert (largest.status, largest.body["redriven"], largest.body["next_after"]) == (200, 0, None)


def test_an_explicit_list_and_a_limit_answer_where_to_continue(pipeline: Pipeline, metrics_fn: Any) -> None:
    # Given 30 dead letters
    org_id, _ = pipeline.new_org()
    jobs = seed_dead_letters(pipeline.admin_url, org_id, 30)
    admin = ApiClient(metrics_fn, {"sub": "ops", "org_id": org_id, "role": "admin"})
    # When an admin redrives at most 12 of them
    first = admin.post(REDRIVE, json_body={"limit": 12})
    # Then 12 are redriven, and the answer says where to continue
    assert first.status == 200
    assert (first.body["redriven"], first.body["job_ids"]) == (12, jobs[:12])
    assert first.body["next_after"] is not None
    # When the next call continues there
    second = admin.post(REDRIVE, json_body={"limit": 100, "after": first.body["next_after"]})
    assert (second.body["redriven"], second.body["job_ids"], second.body["next_after"]) == (
        18,
        jobs[12:],
        None,
    )
    # And a list of ids redrives only those that are dead letters (others are not found)
    with psycopg.connect(pipeline.admin_url) as conn:
        conn.execute(
            "UPDATE slotguard.webhook_delivery_log SET status = 'dead_letter'"
            " WHERE org_id = %s AND job_id = ANY(%s)",
            (org_id, jobs[:3]),
        )
    listed = admin.post(REDRIVE, json_body={"job_ids": [jobs[0], jobs[2], "no-such-job", jobs[5]]})
    assert (listed.body["redriven"], listed.body["job_ids"], listed.body["next_after"]) == (
        2,
        [jobs[0], jobs[2]],
        None,
    )


def test_sqs_failing_leaves_nothing_marked_redriven_and_a_retry_sends_each_once(
    pipeline: Pipeline, metrics_fn: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Given 15 dead letters, and a metrics function whose queue does not exist (SQS refuses every call)
    org_id, _ = pipeline.new_org()
    jobs = seed_dead_letters(pipeline.admin_url, org_id, 15)
    monkeypatch.setenv("WEBHOOK_QUEUE_URL", pipeline.queues.main_url + "-gone")
    broken = ApiClient(load_function("metrics"), {"sub": "ops", "org_id": org_id, "role": "admin"})
    # When an admin redrives them
    res = broken.post(REDRIVE, json_body={})
    # Then the answer is 503 (retry), and every row is still a dead letter, unmarked and unaudited
    assert res.status == 503
    assert res.body["error"]["code"] == "upstream_unavailable"
    assert res.body["error"]["message"] == (
        "the queue could not be reached; what is not listed was not redriven, retry shortly"
    )
    assert res.body["error"]["details"]["redriven"] == 0
    # and says where to continue: from the start (null would say nothing is left)
    assert res.body["error"]["details"]["next_after"] == 0
    rows = pipeline.rows(org_id)
    assert {(r["status"], r["redrive_marked_at"], r["error_message"]) for r in rows} == {
        ("dead_letter", None, "RetriableFailure: dependency down")
    }
    assert pipeline.queues.depth(pipeline.sqs) == 0
    # And the log says why, in SQS's words (the caller's answer does not)
    [warning] = log_records(caplog, "redrive: SQS failed")
    # (the code as SQS's JSON protocol names it, or its query protocol: moto answers the latter)
    assert (warning.levelname, warning.error) in {
        ("WARNING", "QueueDoesNotExist"),
        ("WARNING", "NonExistentQueue"),
    }
    # When SQS is back and the admin retries
    admin = ApiClient(metrics_fn, {"sub": "ops", "org_id": org_id, "role": "admin"})
    [(status, body, _)] = redrive_all(admin)
    # Then each is sent once, pending, audited once
    assert (status, body["redriven"], body["job_ids"]) == (200, 15, jobs)
    assert queued_ids(pipeline) == Counter(dict.fromkeys(jobs, 1))
    assert {(r["status"], r["error_message"]) for r in pipeline.rows(org_id)} == {("pending", None)}
    assert [h["actor"] for h in metrics_fn.service.redrive_history(uuid.UUID(org_id), jobs[0])] == [
        "user:ops"
    ]


def test_a_redrive_that_dies_after_sending_is_completed_by_the_next_one(
    pipeline: Pipeline, metrics_fn: Any
) -> None:
    # Given 5 dead letters, and a metrics function that dies right after SQS took its batch
    org_id, _ = pipeline.new_org()
    jobs = seed_dead_letters(pipeline.admin_url, org_id, 5)
    sqs = metrics_fn.service._queue._sqs
    crash = {"on": True}

    def die(**_: Any) -> None:
        if crash["on"]:
            raise SimulatedCrash

    sqs.meta.events.register("after-call.sqs.SendMessageBatch", die)
    admin = ApiClient(metrics_fn, {"sub": "ops", "org_id": org_id, "role": "admin"})
    with pytest.raises(SimulatedCrash):
        admin.post(REDRIVE, json_body={})
    # Then the rows are pending under the redrive's mark (SQS has their messages)
    rows = pipeline.rows(org_id)
    assert {r["status"] for r in rows} == {"pending"}
    assert all(r["redrive_marked_at"] is not None for r in rows)
    assert queued_ids(pipeline) == Counter(dict.fromkeys(jobs, 1))
    # When another redrive runs at once, it leaves them to the one that marked them
    crash["on"] = False
    assert admin.post(REDRIVE, json_body={}).body["redriven"] == 0
    # When one runs once the mark is old (that redrive is surely gone)
    with psycopg.connect(pipeline.admin_url) as conn:
        conn.execute(
            "UPDATE slotguard.webhook_delivery_log SET redrive_marked_at = now() - interval '10 minutes'"
            " WHERE org_id = %s",
            (org_id,),
        )
    res = admin.post(REDRIVE, json_body={})
    # Then it sends them again (whether SQS had them was unknown: the processor's claim acknowledges
    # a second copy) and settles them
    assert (res.status, res.body["redriven"], res.body["job_ids"]) == (200, 5, jobs)
    assert queued_ids(pipeline) == Counter(dict.fromkeys(jobs, 1))
    rows = pipeline.rows(org_id)
    assert {(r["status"], r["redrive_marked_at"], r["error_message"]) for r in rows} == {
        ("pending", None, None)
    }


def test_a_dead_letter_sqs_refuses_is_reported_and_passed_over(pipeline: Pipeline, metrics_fn: Any) -> None:
    # Given 12 dead letters, one of which SQS refuses (its type holds U+FFFF, stored before the
    # receiver refused such types)
    org_id, _ = pipeline.new_org()
    jobs = seed_dead_letters(pipeline.admin_url, org_id, 12)
    with psycopg.connect(pipeline.admin_url) as conn:
        conn.execute(
            "UPDATE slotguard.webhook_delivery_log SET event_type = 'bad\uffff'"
            " WHERE org_id = %s AND job_id = %s",
            (org_id, jobs[3]),
        )
    admin = ApiClient(metrics_fn, {"sub": "ops", "org_id": org_id, "role": "admin"})
    # When they are redriven
    answers = redrive_all(admin)
    # Then the refused one is named with SQS's reason and stays a dead letter, and the others are redriven
    [(status, body, _)] = answers
    assert status == 200
    assert body["job_ids"] == jobs[:3] + jobs[4:]
    [refused] = body["not_sent"]
    assert refused["job_id"] == jobs[3]
    assert refused["error"].startswith("InvalidParameterValue: Invalid characters found")
    rows = {r["job_id"]: r for r in pipeline.rows(org_id)}
    assert (rows[jobs[3]]["status"], rows[jobs[3]]["redrive_marked_at"]) == ("dead_letter", None)
    assert rows[jobs[3]]["error_message"] == "RetriableFailure: dependency down"
    assert queued_ids(pipeline) == Counter(dict.fromkeys(jobs[:3] + jobs[4:], 1))
    assert metrics_fn.service.redrive_history(uuid.UUID(org_id), jobs[3]) == []


def test_a_call_spent_on_unsettled_rows_still_says_where_to_continue(
    pipeline: Pipeline, metrics_fn: Any
) -> None:
    # Given 10 rows a dead redrive left marked long ago, and 5 dead letters after them
    org_id, _ = pipeline.new_org()
    jobs = seed_dead_letters(pipeline.admin_url, org_id, 15)
    mark_as_being_redriven(pipeline.admin_url, org_id, jobs[:10], seconds_ago=600)
    admin = ApiClient(metrics_fn, {"sub": "ops", "org_id": org_id, "role": "admin"})
    # When a call with room for 10 spends it all on those
    first = admin.post(REDRIVE, json_body={"limit": 10})
    assert (first.status, first.body["job_ids"]) == (200, jobs[:10])
    # Then it does not claim that nothing is left: following it redrives the dead letters
    assert first.body["next_after"] is not None
    second = admin.post(REDRIVE, json_body={"after": first.body["next_after"]})
    assert (second.body["job_ids"], second.body["next_after"]) == (jobs[10:], None)


def make_large(admin_url: str, org_id: str, job_ids: list[str], chars: int) -> None:
    """Give these dead letters a payload of about `chars` bytes (a string of that many x)."""
    with psycopg.connect(admin_url) as conn:
        conn.execute(
            "UPDATE slotguard.webhook_delivery_log"
            " SET event_data = jsonb_build_object('type', event_type, 'data', repeat('x', %s))"
            " WHERE org_id = %s AND job_id = ANY(%s)",
            (chars, org_id, job_ids),
        )


def test_large_dead_letters_are_sent_in_batches_filled_by_bytes(pipeline: Pipeline, metrics_fn: Any) -> None:
    # Given ten dead letters of about 200 KB each: together over SendMessageBatch's 1 MiB
    org_id, _ = pipeline.new_org()
    jobs = seed_dead_letters(pipeline.admin_url, org_id, 10)
    make_large(pipeline.admin_url, org_id, jobs, 200_000)
    admin = ApiClient(metrics_fn, {"sub": "ops", "org_id": org_id, "role": "admin"})
    # When an admin redrives all of them
    answers = redrive_all(admin)
    # Then each is redriven once (no 503: SQS never saw a batch over its limit)
    assert [status for status, _, _ in answers] == [200] * len(answers), answers[-1][:2]
    assert [job for _, body, _ in answers for job in body["job_ids"]] == jobs
    assert answers[-1][1]["next_after"] is None
    assert queued_ids(pipeline) == Counter(dict.fromkeys(jobs, 1))
    assert {r["status"] for r in pipeline.rows(org_id)} == {"pending"}


def test_a_dead_letter_too_large_for_sqs_is_not_sent_and_passed_over(
    pipeline: Pipeline, metrics_fn: Any
) -> None:
    # Given 12 dead letters, one of them larger than SQS takes in one message (1 MiB)
    org_id, _ = pipeline.new_org()
    jobs = seed_dead_letters(pipeline.admin_url, org_id, 12)
    make_large(pipeline.admin_url, org_id, [jobs[4]], 1_100_000)
    admin = ApiClient(metrics_fn, {"sub": "ops", "org_id": org_id, "role": "admin"})
    # When an admin redrives all of them
    answers = redrive_all(admin)
    # Then the others are redriven, the large one is named with the reason and stays a dead letter
    assert [status for status, _, _ in answers] == [200] * len(answers), answers[-1][:2]
    assert [job for _, body, _ in answers for job in body["job_ids"]] == jobs[:4] + jobs[5:]
    [refused] = [n for _, body, _ in answers for n in body["not_sent"]]
    assert refused["job_id"] == jobs[4]
    assert refused["error"].startswith("MessageTooLong: ")
    assert answers[-1][1]["next_after"] is None
    rows = {r["job_id"]: r for r in pipeline.rows(org_id)}
    assert (rows[jobs[4]]["status"], rows[jobs[4]]["redrive_marked_at"]) == ("dead_letter", None)
    assert queued_ids(pipeline) == Counter(dict.fromkeys(jobs[:4] + jobs[5:], 1))


def test_a_limit_counts_what_was_not_sent_and_the_next_call_passes_it_over(
    pipeline: Pipeline, metrics_fn: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given 5 dead letters, the first too large for SQS, and a redrive marking 2 rows at a time
    monkeypatch.setattr("slotguard.services.metrics.REDRIVE_BATCH", 2)
    org_id, _ = pipeline.new_org()
    big, a, b, c, d = seed_dead_letters(pipeline.admin_url, org_id, 5)
    make_large(pipeline.admin_url, org_id, [big], 1_100_000)
    admin = ApiClient(metrics_fn, {"sub": "ops", "org_id": org_id, "role": "admin"})
    # When an admin redrives at most 3
    first = admin.post(REDRIVE, json_body={"limit": 3})
    # Then 3 are answered, the one not sent among them: 2 redriven, more left after them
    assert first.status == 200, first.body
    assert first.body["job_ids"] == [a, b]
    assert [n["job_id"] for n in first.body["not_sent"]] == [big]
    assert first.body["next_after"] is not None
    # When the next call continues from there
    second = admin.post(REDRIVE, json_body={"after": first.body["next_after"]})
    # Then it redrives the rest and does not try the one SQS refused again
    assert (second.body["job_ids"], second.body["not_sent"], second.body["next_after"]) == ([c, d], [], None)
    assert queued_ids(pipeline) == Counter(dict.fromkeys([a, b, c, d], 1))


def test_a_batch_sqs_refuses_as_too_long_is_sent_message_by_message(
    pipeline: Pipeline, metrics_fn: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given 3 dead letters, and a queue whose own limit is smaller than the redrive assumes (a
    # queue created with MaximumMessageSize 256 KiB): SQS refuses their batch as a whole
    org_id, _ = pipeline.new_org()
    jobs = seed_dead_letters(pipeline.admin_url, org_id, 3)
    make_large(pipeline.admin_url, org_id, [jobs[1]], 300_000)
    pipeline.sqs.set_queue_attributes(
        QueueUrl=pipeline.queues.main_url, Attributes={"MaximumMessageSize": str(256 * 1024)}
    )
    admin = ApiClient(metrics_fn, {"sub": "ops", "org_id": org_id, "role": "admin"})
    # When an admin redrives them
    [(status, body, _)] = redrive_all(admin)
    # Then the two SQS takes are redriven and the one it refuses is named with SQS's reason
    assert status == 200, body
    assert body["job_ids"] == [jobs[0], jobs[2]]
    [refused] = body["not_sent"]
    assert refused["job_id"] == jobs[1]
    assert refused["error"].startswith("InvalidParameterValue: ")
    assert body["next_after"] is None
    assert queued_ids(pipeline) == Counter(dict.fromkeys([jobs[0], jobs[2]], 1))


def test_an_org_with_1000_redriven_deliveries_pending_is_refused_and_another_org_is_not(
    pipeline: Pipeline, metrics_fn: Any
) -> None:
    # Given an org with 1,200 dead letters (its own sender can make them at will), and no
    # processor running: what is redriven stays pending on the shared queue
    org_a, _ = pipeline.new_org()
    jobs_a = seed_dead_letters(pipeline.admin_url, org_a, 1200)
    admin_a = ApiClient(metrics_fn, {"sub": "ops", "org_id": org_a, "role": "admin"})
    # When its admin redrives, following next_after, until 1,000 are redriven or a call is refused
    redriven, request, last = 0, {"limit": 1000}, None
    for _ in range(20):
        last = admin_a.post(REDRIVE, json_body=request)
        if last.status != 200:
            break
        redriven += last.body["redriven"]
        if last.body["next_after"] is None:
            break
        request = {"limit": 1000, "after": last.body["next_after"]}
    # Then no more than 1,000 were put on the queue: the call after is refused, with its own code
    # and when to try again, and sends nothing
    assert redriven == 1000
    assert last is not None and last.status == 429, last.body
    assert last.body["error"]["code"] == "redrive_backlog"
    assert last.body["error"]["details"] == {"pending_redriven": 1000, "max_pending_redriven": 1000}
    assert int(last.headers["Retry-After"]) > 0
    assert pipeline.queues.depth(pipeline.sqs) == 1000
    assert Counter(r["status"] for r in pipeline.rows(org_a)) == {"pending": 1000, "dead_letter": 200}
    # And another org's redrive is unaffected
    org_b, _ = pipeline.new_org()
    jobs_b = seed_dead_letters(pipeline.admin_url, org_b, 5)
    admin_b = ApiClient(metrics_fn, {"sub": "ops", "org_id": org_b, "role": "admin"})
    other = admin_b.post(REDRIVE, json_body={})
    assert (other.status, other.body["job_ids"], other.body["next_after"]) == (200, jobs_b, None)
    # When 100 of the first org's redriven deliveries are done, its redrive takes only that room
    with psycopg.connect(pipeline.admin_url) as conn:
        conn.execute(
            "UPDATE slotguard.webhook_delivery_log SET status = 'completed', completed_at = now()"
            " WHERE org_id = %s AND job_id = ANY(%s)",
            (org_a, jobs_a[:100]),
        )
    res = admin_a.post(REDRIVE, json_body={"limit": 1000, "after": request.get("after", 0)})
    assert res.status == 200, res.body
    assert res.body["job_ids"] == jobs_a[1000:1100]
    assert res.body["next_after"] is not None
    assert admin_a.post(REDRIVE, json_body={"after": res.body["next_after"]}).status == 429


def test_a_redrive_still_running_a_minute_after_marking_holds_its_rows_against_the_backlog(
    pipeline: Pipeline, metrics_fn: Any
) -> None:
    # Given an org whose 1,000 dead letters a redrive marked a minute ago and has not settled yet
    # (within the 120 s a redrive may take, so it may still be sending them), and 5 dead letters more
    org_id, _ = pipeline.new_org()
    jobs = seed_dead_letters(pipeline.admin_url, org_id, 1005)
    mark_as_being_redriven(pipeline.admin_url, org_id, jobs[:1000], seconds_ago=60)
    # When its admin redrives
    admin = ApiClient(metrics_fn, {"sub": "ops", "org_id": org_id, "role": "admin"})
    res = admin.post(REDRIVE, json_body={})
    # Then the marked rows count as redriven and not processed: the org is at its cap, the call is
    # refused and nothing is sent
    assert res.status == 429, res.body
    assert res.body["error"] == {
        "code": "redrive_backlog",
        "message": "1000 or more redriven deliveries of this org are not processed yet: redrive more"
        " once they are",
        "details": {"pending_redriven": 1000, "max_pending_redriven": 1000},
    }
    assert pipeline.queues.depth(pipeline.sqs) == 0
    assert Counter(r["status"] for r in pipeline.rows(org_id)) == {"pending": 1000, "dead_letter": 5}


def test_a_redriven_dead_letter_gets_a_fresh_budget_and_goes_as_compact_json_as_stored(
    pipeline: Pipeline, metrics_fn: Any
) -> None:
    # Given a dead letter that spent its 3 attempts, whose payload holds text beyond ASCII
    org_id, _ = pipeline.new_org()
    [job] = seed_dead_letters(pipeline.admin_url, org_id, 1)
    with psycopg.connect(pipeline.admin_url) as conn:
        conn.execute(
            "UPDATE slotguard.webhook_delivery_log SET event_data = %s::jsonb WHERE job_id = %s",
            ('{"type": "invoice.paid", "data": {"note": "payé", "n": [1, 2]}}', job),
        )
    # When an admin redrives it
    admin = ApiClient(metrics_fn, {"sub": "ops", "org_id": org_id, "role": "admin"})
    assert admin.post(REDRIVE, json_body={}).body["job_ids"] == [job]
    # Then it may be attempted as many times again as a new webhook (WEBHOOK_MAX_ATTEMPTS)
    [row] = pipeline.rows(org_id)
    assert (row["status"], row["attempts"], row["max_attempts"]) == ("pending", 3, 3 + MAX_ATTEMPTS)
    # And the message is the stored JSON, compact and in UTF-8 (the size the receiver bounded)
    [message] = pipeline.sqs.receive_message(QueueUrl=pipeline.queues.main_url).get("Messages", [])
    assert message["Body"] == '{"data":{"n":[1,2],"note":"payé"},"type":"invoice.paid"}'


def test_a_redrive_does_not_send_again_what_a_running_redrive_marked_a_minute_ago(
    pipeline: Pipeline, metrics_fn: Any
) -> None:
    # Given 2 rows a redrive marked a minute ago and has not settled (it may still be sending
    # them), and 1 dead letter
    org_id, _ = pipeline.new_org()
    marked_a, marked_b, dead = seed_dead_letters(pipeline.admin_url, org_id, 3)
    mark_as_being_redriven(pipeline.admin_url, org_id, [marked_a, marked_b], seconds_ago=60)
    # When another redrive runs
    admin = ApiClient(metrics_fn, {"sub": "ops", "org_id": org_id, "role": "admin"})
    res = admin.post(REDRIVE, json_body={})
    # Then it sends the dead letter only: the marked rows are the running redrive's (sent again
    # only once their mark is 120 s old)
    assert (res.status, res.body["job_ids"], res.body["next_after"]) == (200, [dead], None)
    assert queued_ids(pipeline) == Counter({dead: 1})


def test_the_cleanup_settles_the_marks_of_a_redrive_that_died(
    pipeline: Pipeline, metrics_fn: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given 6 rows a redrive marked and then died before sending (no message on the queue): 4 of
    # them marked 10 minutes ago, 2 just now (a redrive that may still be running)
    org_id, _ = pipeline.new_org()
    jobs = seed_dead_letters(pipeline.admin_url, org_id, 6)
    mark_as_being_redriven(pipeline.admin_url, org_id, jobs[:4], seconds_ago=600)
    mark_as_being_redriven(pipeline.admin_url, org_id, jobs[4:], seconds_ago=0)
    # When the scheduled cleanup runs (no redrive of the org has run since), in batches of 3
    monkeypatch.setenv("CLEANUP_BATCH_SIZE", "3")
    cleanup = load_function("cleanup")
    report = cleanup.lambda_handler(
        {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}},
        LambdaContext(function_name="cleanup"),
    )
    # Then the old marks are settled: those rows are dead letters again, as before the redrive,
    # listed and redrivable (all 4 counted, over two batches); the fresh ones are left to the
    # redrive that holds them
    assert report["stale_redrive_marks_settled"] == 4
    rows = {r["job_id"]: r for r in pipeline.rows(org_id)}
    assert [(rows[j]["status"], rows[j]["redrive_marked_at"]) for j in jobs[:4]] == [
        ("dead_letter", None)
    ] * 4
    assert {rows[j]["status"] for j in jobs[4:]} == {"pending"}
    assert all(rows[j]["redrive_marked_at"] is not None for j in jobs[4:])
    admin = ApiClient(metrics_fn, {"sub": "ops", "org_id": org_id, "role": "admin"})
    assert admin.post(REDRIVE, json_body={}).body["job_ids"] == jobs[:4]


@pytest.mark.parametrize("size", ["small", "large"])
def test_sqs_failing_mid_way_keeps_what_it_took_redriven_and_the_rest_dead_letters_to_redrive_again(
    pipeline: Pipeline, metrics_fn: Any, size: str
) -> None:
    # Given 25 dead letters: small ones (ten to a SendMessageBatch call: SQS fails between two
    # batches of rows) or of 200 KB each (about four to a call: SQS fails inside a batch of rows)
    org_id, _ = pipeline.new_org()
    jobs = seed_dead_letters(pipeline.admin_url, org_id, 25)
    if size == "large":
        make_large(pipeline.admin_url, org_id, jobs, 200_000)
    # And SQS losing the queue right after answering the redrive's first SendMessageBatch call (the
    # queue is deleted on moto's server: the next calls get SQS's own NonExistentQueue error)
    calls: list[dict[str, Any]] = []

    def sending(params: dict[str, Any], **_: Any) -> None:
        calls.append(
            {"ids": {e["Id"]: e["MessageAttributes"]["webhook_id"]["StringValue"] for e in params["Entries"]}}
        )

    def answered(parsed: dict[str, Any], **_: Any) -> None:
        calls[-1]["parsed"] = parsed
        if len(calls) == 1:
            pipeline.sqs.delete_queue(QueueUrl=pipeline.queues.main_url)

    sqs = metrics_fn.service._queue._sqs
    sqs.meta.events.register("provide-client-params.sqs.SendMessageBatch", sending)
    sqs.meta.events.register("after-call.sqs.SendMessageBatch", answered)
    admin = ApiClient(metrics_fn, {"sub": "ops", "org_id": org_id, "role": "admin"})
    # When an admin redrives them
    res = admin.post(REDRIVE, json_body={})
    # Then the answer is 503, naming what SQS took (the first call's messages, every one of them)
    assert res.status == 503, res.body
    assert res.body["error"]["code"] == "upstream_unavailable"
    first = calls[0]
    taken = [first["ids"][s["Id"]] for s in first["parsed"]["Successful"]]
    assert taken and sorted(taken) == sorted(first["ids"].values())
    assert len(calls) >= 2 and "Error" in calls[1]["parsed"]
    details = res.body["error"]["details"]
    assert (details["redriven"], details["job_ids"]) == (len(taken), taken)
    assert taken == jobs[: len(taken)]
    # (between two batches of ten rows, or inside the first: the batch's rows after the failure too)
    assert len(taken) == 10 if size == "small" else 0 < len(taken) < 10, len(taken)
    # And those rows are redriven (pending, settled, audited once); every other one is a dead letter
    # as before, unmarked and unaudited
    rows = {r["job_id"]: r for r in pipeline.rows(org_id)}
    for job in jobs:
        row = rows[job]
        if job in taken:
            assert (row["status"], row["redrive_marked_at"], row["error_message"]) == ("pending", None, None)
            assert len(metrics_fn.service.redrive_history(uuid.UUID(org_id), job)) == 1
        else:
            assert (row["status"], row["redrive_marked_at"], row["error_message"]) == (
                "dead_letter",
                None,
                "RetriableFailure: dependency down",
            ), job
            assert metrics_fn.service.redrive_history(uuid.UUID(org_id), job) == []
    # When SQS has the queue again and the admin retries from where the answer says
    assert pipeline.sqs.create_queue(QueueName=pipeline.queues.main_url.rsplit("/", 1)[-1])["QueueUrl"] == (
        pipeline.queues.main_url
    )
    sqs.meta.events.unregister("after-call.sqs.SendMessageBatch", answered)
    answers = redrive_all(admin, {"after": details["next_after"]})
    # Then exactly the rest is redriven, each sent once; none of those SQS had taken is sent again
    assert [status for status, _, _ in answers] == [200] * len(answers), answers[-1][:2]
    rest = [job for job in jobs if job not in taken]
    assert [job for _, body, _ in answers for job in body["job_ids"]] == rest
    assert queued_ids(pipeline) == Counter(dict.fromkeys(rest, 1))
    assert {r["status"] for r in pipeline.rows(org_id)} == {"pending"}
