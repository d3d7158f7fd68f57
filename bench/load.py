"""`make load`: locust, headless, against the local stack (started here, as `make local` runs it)
or any slotguard API: SLOTGUARD_API_URL, SLOTGUARD_TOKEN (a member's JWT), SLOTGUARD_WEBHOOK_SECRET
(that org's whsec_...), optional SLOTGUARD_ORG_ID (else the token's org_id claim).

Two phases (bench/locustfile.py):
  1. the mix: LOAD_USERS (50) users for LOAD_SECONDS (60): bookers (free slots, contested slots,
     reads) and webhook senders, 3:1;
  2. the burst: LOAD_BURST (1000) users, each one attempt at the same slot, spawned at once.
Then it checks what was stored (no double booking; every accepted webhook applied) and prints
one table: per request type p50 / p95 / p99, throughput, error rate; and the pass lines.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt

from bench.load_plan import Plan

ROOT = Path(__file__).resolve().parents[1]
USERS = int(os.environ.get("LOAD_USERS", "50"))
SECONDS = int(os.environ.get("LOAD_SECONDS", "60"))
BURST = int(os.environ.get("LOAD_BURST", "1000"))


def progress(message: str) -> None:
    print(f"[load] {message}", file=sys.stderr, flush=True)


@contextmanager
def target() -> Iterator[dict[str, str]]:
    if os.environ.get("SLOTGUARD_API_URL"):
        token = os.environ["SLOTGUARD_TOKEN"]
        yield {
            "url": os.environ["SLOTGUARD_API_URL"].rstrip("/"),
            "token": token,
            "secret": os.environ["SLOTGUARD_WEBHOOK_SECRET"],
            "org_id": os.environ.get("SLOTGUARD_ORG_ID")
            or jwt.decode(token, options={"verify_signature": False})["org_id"],
        }
        return
    from tests.e2e.stack_process import StackProcess

    home = tempfile.mkdtemp(prefix="slotguard-load-")  # kept: the stack's log (stack.log)
    progress(f"starting a local stack (its log: {home}/stack.log)")
    stack = StackProcess(Path(home)).start()
    try:
        org = stack.info["orgs"][0]
        yield {
            "url": stack.info["api_url"],
            "token": org["token"],
            "secret": org["webhook_secret"],
            "org_id": org["org_id"],
        }
    finally:
        stack.terminate(timeout_s=30)


def locust(
    t: dict[str, str], run: str, csv_prefix: Path, users: int, seconds: int, classes: list[str]
) -> None:
    env = {
        **os.environ,
        "LOAD_TOKEN": t["token"],
        "LOAD_ORG_ID": t["org_id"],
        "LOAD_WEBHOOK_SECRET": t["secret"],
        "LOAD_RUN": run,
        "PYTHONPATH": str(ROOT),
    }
    cmd = [
        sys.executable, "-m", "locust", "-f", str(ROOT / "bench" / "locustfile.py"), "--headless",
        "--host", t["url"], "--users", str(users), "--spawn-rate", str(users), "--run-time", f"{seconds}s",
        "--stop-timeout", "30", "--csv", str(csv_prefix), "--json-file", f"{csv_prefix}_final",
        "--only-summary", "--loglevel", "WARNING",
        *classes,
    ]  # fmt: skip
    progress(f"locust: {users} users x {seconds}s: {' '.join(classes)} (its output: {csv_prefix}.log)")
    with open(f"{csv_prefix}.log", "wb") as log:
        done = subprocess.run(cmd, env=env, check=False, stdout=log, stderr=subprocess.STDOUT)
    if not Path(f"{csv_prefix}_final.json").exists():
        raise RuntimeError(
            f"locust failed ({done.returncode}): {Path(f'{csv_prefix}.log').read_text()[-3000:]}"
        )


def _percentile(times: dict[str, int], q: float) -> int:
    """Locust's response-time histogram (rounded ms -> count) at quantile q."""
    total = sum(times.values())
    seen = 0
    for ms, count in sorted(((int(float(k)), v) for k, v in times.items())):
        seen += count
        if seen >= q * total:
            return ms
    return 0


def stats(csv_prefix: Path) -> list[dict[str, str]]:
    """The final figures per request name (locust's --json-file; its CSV can miss the last second)."""
    entries = json.loads(Path(f"{csv_prefix}_final.json").read_text())
    rows = []
    for e in entries:
        n = e["num_requests"]
        span = max(e["last_request_timestamp"] - e["start_time"], 1e-9)
        rows.append(
            {
                "Name": e["name"],
                "Request Count": str(n),
                "Failure Count": str(e["num_failures"]),
                "50%": str(_percentile(e["response_times"], 0.50)),
                "95%": str(_percentile(e["response_times"], 0.95)),
                "99%": str(_percentile(e["response_times"], 0.99)),
                "Average Response Time": str(e["total_response_time"] / max(n, 1)),
                "Requests/s": str(n / span),
            }
        )
    return rows


def failures(csv_prefix: Path) -> dict[tuple[str, str], int]:
    path = Path(f"{csv_prefix}_failures.csv")
    if not path.exists():
        return {}
    with open(path, newline="") as f:
        return {(r["Name"], r["Error"]): int(r["Occurrences"]) for r in csv.DictReader(f)}  # (last CSV write)


def get(t: dict[str, str], path: str, params: dict[str, Any]) -> Any:
    url = f"{t['url']}{path}?{urllib.parse.urlencode(params)}"
    request = urllib.request.Request(url, headers={"authorization": f"Bearer {t['token']}"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - the API under test
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"GET {url}: {exc.code} {exc.read()[:2000]!r}") from exc


def stored(t: dict[str, str], resource: str, start: str, end: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    params: dict[str, Any] = {
        "resource_id": resource,
        "from": start,
        "to": end,
        "status": "scheduled",
        "limit": 200,
    }
    while True:
        page = get(t, "/appointments", params)
        rows += page["items"]
        if not page.get("next_cursor"):
            return rows
        params["cursor"] = page["next_cursor"]


def row_of(s: dict[str, str], fails: dict[tuple[str, str], int]) -> str:
    n = int(s["Request Count"])
    busy = sum(v for (name, err), v in fails.items() if name == s["Name"] and "busy" in err)
    err = int(s["Failure Count"]) - busy
    return (
        f"| {s['Name']} | {n} | {s['50%']} | {s['95%']} | {s['99%']}"
        f" | {float(s['Average Response Time']):.0f} | {float(s['Requests/s']):.1f}"
        f" | {100 * err / max(n, 1):.2f} % | {100 * busy / max(n, 1):.2f} % |"
    )


def main() -> int:
    run = str(uuid.uuid4())
    tmp = tempfile.mkdtemp(prefix="slotguard-locust-")  # kept: locust's CSVs and logs
    with target() as t:
        plan = Plan(uuid.UUID(run))  # the calendars the users book on, derived from the run's id
        mix, burst = Path(tmp) / "mix", Path(tmp) / "burst"
        locust(t, run, mix, USERS, SECONDS, ["Booker", "WebhookSender"])
        locust(t, run, burst, BURST, 25, ["BurstUser"])
        mix_stats, burst_stats = stats(mix), stats(burst)
        mix_fails, burst_fails = failures(mix), failures(burst)

        # What was stored: one appointment at the burst slot; at most one at each contested slot.
        start = (plan.base - timedelta(days=2)).isoformat()
        burst_rows = stored(t, plan.calendar("burst"), start, plan.base.isoformat())
        hot_rows = stored(t, plan.calendar("hot"), start, plan.base.isoformat())
        hot_doubles = len(hot_rows) - len({r["scheduled_at"] for r in hot_rows})
        # Every accepted webhook applied: wait for the processor to drain.
        sent = next(
            (int(s["Request Count"]) - int(s["Failure Count"])) for s in mix_stats if "webhooks" in s["Name"]
        )
        far = (plan.base + timedelta(days=800)).isoformat()
        deadline = time.monotonic() + 120
        applied = 0
        while time.monotonic() < deadline:
            applied = len(stored(t, plan.calendar("webhook"), plan.base.isoformat(), far))
            if applied >= sent:
                break
            time.sleep(2)

    header = [
        "| request | count | p50 ms | p95 ms | p99 ms | avg ms | req/s | error rate | lock rejections |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    la = os.getloadavg()
    print(
        f"target: {t['url']}; {USERS} users for {SECONDS}s (bookers 3 : webhook senders 1),"
        f" then {BURST} users at one slot; load average {la[0]:.2f} {la[1]:.2f} {la[2]:.2f};"
        f" {os.cpu_count()} cores\n"
    )
    print(
        "\n".join(
            header
            + [row_of(s, mix_fails) for s in mix_stats]
            + [row_of(s, burst_fails) for s in burst_stats if s["Name"] != "Aggregated"]
        )
    )
    bookings = [s for s in mix_stats if s["Name"].startswith("POST /appointments")]
    n_book = sum(int(s["Request Count"]) for s in bookings)
    avg_book = sum(float(s["Average Response Time"]) * int(s["Request Count"]) for s in bookings) / max(
        n_book, 1
    )
    busy = sum(
        v for (name, err), v in mix_fails.items() if name.startswith("POST /appointments") and "busy" in err
    )
    hooks = next(s for s in mix_stats if "webhooks" in s["Name"])
    hook_ok = 100 * applied / max(int(hooks["Request Count"]), 1)
    burst_answers = next((int(s["Request Count"]) for s in burst_stats if s["Name"] != "Aggregated"), 0)
    lines = [
        ("average booking latency < 200 ms", f"{avg_book:.0f} ms", avg_book < 200),
        (
            f"{BURST} concurrent attempts at one slot -> 0 double bookings",
            f"{len(burst_rows)} stored of {burst_answers} answered; contested slots: {hot_doubles} doubles",
            len(burst_rows) == 1 and hot_doubles == 0,
        ),
        (
            "webhook success > 99 % (accepted and applied)",
            f"{hook_ok:.2f} % ({applied} of {hooks['Request Count']})",
            hook_ok > 99,
        ),
        (
            "lock rejection < 1 %",
            f"{100 * busy / max(n_book, 1):.2f} % ({busy} of {n_book})",
            busy < 0.01 * n_book,
        ),
    ]
    print("\n| pass line | measured | |\n|---|---|---|")
    for what, measured, ok in lines:
        print(f"| {what} | {measured} | {'pass' if ok else 'FAIL'} |")
    return 0 if all(ok for _, _, ok in lines) else 1


if __name__ == "__main__":
    sys.exit(main())
