"""The README's walkthrough ("Try it"): its text, and what each of its requests must answer.

`check_walkthrough` takes the answers of one run, in order, as the `curl` on PATH recorded them
(status, method, URL, body), and checks each step's status and body: against the OpenAPI
document's schema for that operation and status, and against what the README says the step
does. Polls (the `retry` helper's attempts) are allowed to repeat; nothing may answer 5xx.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import urllib.parse
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from tests.readme.commands import ROOT


@dataclass(frozen=True)
class Answer:
    method: str
    url: str
    status: int
    body: Any

    @property
    def path(self) -> str:
        return urllib.parse.urlsplit(self.url).path

    @property
    def query(self) -> dict[str, str]:
        return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.url).query))


def walkthrough_script() -> str:
    """The shell blocks of the README's "Try it" section, in order, exactly as written."""
    readme = (ROOT / "README.md").read_text()
    section = re.search(r"^### Try it.*?$(.*?)^#{2,3} ", readme, re.S | re.M)
    assert section, "README.md has no '### Try it' section"
    blocks = re.findall(r"^```bash\n(.*?)^```", section.group(1), re.S | re.M)
    assert blocks, "the 'Try it' section has no bash block"
    return "\n".join(blocks)


@cache
def _openapi() -> dict[str, Any]:
    document: dict[str, Any] = json.loads((ROOT / "docs" / "openapi.json").read_text())
    return document


def _operation(answer: Answer) -> tuple[str, dict[str, Any]]:
    for template, item in _openapi()["paths"].items():
        pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
        if re.match(pattern, answer.path) and answer.method.lower() in item:
            return template, item[answer.method.lower()]
    raise AssertionError(f"{answer.method} {answer.path}: no such operation in docs/openapi.json")


def conforms(answer: Answer) -> None:
    """The body is what docs/openapi.json promises for this operation and status."""
    template, operation = _operation(answer)
    response = operation["responses"].get(str(answer.status))
    assert response, f"{answer.method} {template} answered {answer.status}, not documented"
    schema = response["content"]["application/json"]["schema"]
    validator = Draft202012Validator({**schema, "components": _openapi()["components"]})
    errors = sorted(validator.iter_errors(answer.body), key=str)
    assert not errors, f"{answer.method} {answer.path} {answer.status}: {errors[0].message}"


class Steps:
    """The run's answers, consumed in order; a step may be preceded by polls of the same request."""

    def __init__(self, answers: list[Answer]) -> None:
        self.answers = answers
        self.at = 0

    def next(self, method: str, path: str, status: int, *, polled: bool = False) -> Any:
        while self.at < len(self.answers):
            answer = self.answers[self.at]
            self.at += 1
            matches = answer.method == method and re.fullmatch(path, answer.path)
            if matches and answer.status == status:
                if polled:  # the retry helper's last attempt is the step's answer
                    while self._same_request_follows(answer):
                        answer = self.answers[self.at]
                        self.at += 1
                conforms(answer)
                return answer.body
            if not (polled and matches):
                raise AssertionError(
                    f"expected {method} {path} -> {status}, got {answer.method} {answer.path} -> "
                    f"{answer.status}: {json.dumps(answer.body)[:500]}"
                )
        raise AssertionError(f"expected {method} {path} -> {status}; the walkthrough made no such request")

    def _same_request_follows(self, answer: Answer) -> bool:
        if self.at >= len(self.answers):
            return False
        following = self.answers[self.at]
        return (following.method, following.url) == (answer.method, answer.url)


UUID = "[0-9a-f-]{36}"


def check_walkthrough(answers: list[Answer], stdout: str) -> None:
    """One run of the walkthrough answered, step by step, what the README says."""
    assert not [a for a in answers if a.status >= 500], [a for a in answers if a.status >= 500]
    steps = Steps(answers)
    # the org's appointments
    page = steps.next("GET", "/appointments", 200)
    assert isinstance(page["items"], list)
    # book 10:00-11:00 (201), then 10:30-10:45 (409 slot_conflict naming the first)
    booked = steps.next("POST", "/appointments", 201)
    assert (booked["scheduled_at"], booked["duration_minutes"], booked["status"]) == (
        "2030-01-07T10:00:00Z",
        60,
        "scheduled",
    )
    conflict = steps.next("POST", "/appointments", 409)
    assert conflict["error"]["code"] == "slot_conflict"
    assert booked["id"] in [c["id"] for c in conflict["error"]["details"]["conflicts"]]
    # reschedule to 14:00 (200 {appointment, previous}), cancel the new one, the audit trail
    moved = steps.next("POST", f"/appointments/{booked['id']}/reschedule", 200)
    assert moved["previous"]["id"] == booked["id"]
    assert moved["appointment"]["scheduled_at"] == "2030-01-07T14:00:00Z"
    assert moved["previous"]["status"] != "scheduled"
    cancelled = steps.next("POST", f"/appointments/{moved['appointment']['id']}/cancel", 200)
    assert cancelled["status"] == "cancelled"
    history = steps.next("GET", f"/appointments/{booked['id']}/history", 200)
    assert history["appointment_id"] == booked["id"]
    assert [e["action"] for e in history["entries"]][:1] == ["created"]
    assert len(history["entries"]) >= 2
    # free 30-minute slots 08:00-18:00: every one, since that day's appointments moved or ended
    slots = steps.next("GET", "/availability/slots", 200)
    starts = [s["start"] for s in slots["slots"]]
    assert starts[0] == "2030-01-07T08:00:00Z" and "2030-01-07T10:00:00Z" in starts, starts
    assert "2030-01-07T14:00:00Z" in starts, starts
    # an admin opens a new room's calendar (Berlin, weekdays 09:00-17:00, 15 minutes' buffer after)
    opened = steps.next("PUT", f"/calendars/{UUID}/rules", 200)
    room = opened["calendar"]["resource_id"]
    assert opened["calendar"]["version"] == 1 and opened["calendar"]["rules"]["time_zone"] == "Europe/Berlin"
    assert opened["violations"]["count"] == 0
    # inside the hours: 201; 08:00 Berlin (07:00Z) is 422 outside_hours
    inside = steps.next("POST", "/appointments", 201)
    assert (inside["resource_id"], inside["scheduled_at"]) == (room, "2030-01-07T09:00:00Z")
    outside = steps.next("POST", "/appointments", 422)
    assert outside["error"]["code"] == "outside_hours"
    # the room's slots that day, in UTC and as Berlin wall times, the buffer after 09:00-09:45 kept
    local = steps.next("GET", "/availability/slots", 200)
    assert local["time_zone"] == "Europe/Berlin"
    assert [(s["start"], s["local_start"]) for s in local["slots"]] == [
        ("2030-01-07T08:00:00Z", "2030-01-07T09:00:00"),
        ("2030-01-07T10:00:00Z", "2030-01-07T11:00:00"),
        ("2030-01-07T10:30:00Z", "2030-01-07T11:30:00"),
    ], local["slots"]
    # a signed webhook booked 2030-01-08 09:00 (the signer's 202 is on stdout), then cancelled it
    assert re.search(r'"status": ?"queued"', stdout), stdout
    hooked = steps.next("GET", "/appointments", 200, polled=True)
    assert [a["scheduled_at"] for a in hooked["items"]][:1] == ["2030-01-08T09:00:00Z"], hooked
    hooked_id = hooked["items"][0]["id"]
    assert f"booked by webhook: {hooked_id}" in stdout
    gone = steps.next("GET", f"/appointments/{hooked_id}", 200, polled=True)
    assert gone["status"] == "cancelled"
    # the webhook metrics of the org
    stats = steps.next("GET", "/webhook-metrics/delivery-stats", 200)
    assert stats["totals"]["completed"] >= 2, stats
    health = steps.next("GET", "/webhook-metrics/queue-health", 200)
    assert health["status"] in ("healthy", "degraded", "unhealthy")
    timing = steps.next("GET", "/webhook-metrics/processing-time", 200)
    assert timing["overall"]["count"] >= 2, timing
    failures = steps.next("GET", "/webhook-metrics/recent-failures", 200)
    assert isinstance(failures["items"], list)
    redrive = steps.next("POST", "/webhook-metrics/dead-letter-queue/redrive", 200)
    assert isinstance(redrive["redriven"], int)
    assert steps.at == len(answers), f"unexpected requests after the walkthrough: {answers[steps.at :]}"


def curl_recorder(folder: Path) -> Path:
    """A folder holding a `curl` that runs the real curl with the same arguments and records each
    answer's status, method, URL and body in `folder/log`, in order, printing the body as curl
    would. Put it first on PATH."""
    log = folder / "log"
    log.mkdir(parents=True)
    real = shutil.which("curl")
    assert real, "curl is not installed"
    shim = folder / "bin" / "curl"
    shim.parent.mkdir()
    shim.write_text(
        "#!/bin/bash\n"
        f'n=$(date +%s%N); out="{log}/$n"\n'
        f'"{real}" "$@" -o "$out.body" -w "%{{http_code}} %{{method}} %{{url_effective}}" > "$out.status"\n'
        'rc=$?; cat "$out.body" 2>/dev/null; exit $rc\n'
    )
    shim.chmod(0o755)
    return shim.parent


def recorded(bin_dir: Path) -> list[Answer]:
    answers = []
    log = bin_dir.parent / "log"
    for status_file in sorted(log.glob("*.status"), key=lambda p: int(p.stem)):
        status, method, url = status_file.read_text().split(" ", 2)
        body_file = status_file.with_suffix(".body")
        text = body_file.read_text() if body_file.exists() else ""
        answers.append(Answer(method, url, int(status), json.loads(text) if text.strip() else None))
    return answers


def run_walkthrough(env: dict[str, str], bin_dir: Path, runs: int = 2) -> None:
    """The README's walkthrough, as written, from the repository root, `runs` times in a row in a
    shell with `env` (a stack's SLOTGUARD_HOME and SLOTGUARD_PORT); each run's answers checked."""
    script = walkthrough_script()
    env = {**env, "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"}
    for run in range(1, runs + 1):
        for old in (bin_dir.parent / "log").iterdir():
            old.unlink()
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert done.returncode == 0, f"walkthrough run {run}:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
        try:
            check_walkthrough(recorded(bin_dir), done.stdout)
        except AssertionError as exc:
            raise AssertionError(f"walkthrough run {run}: {exc}\n{done.stdout[-3000:]}") from None
