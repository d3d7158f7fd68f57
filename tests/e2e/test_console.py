"""The operations console (GET /console) in a real browser: Debian's headless Chromium, driven by
Selenium, against a real local stack started as `make local` starts it."""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.browser import chromium
from tests.e2e.stack_process import StackProcess, http, running_stack
from tests.e2e.test_local_stack import post_webhook, wait_for

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
# Markup a sender controls: if any of it reached the page as HTML, it would run
XSS_TYPE = '<img src=x onerror="window.__xss=1">'
XSS_TEXT = '</script><script>window.__xss=2</script><img src=x onerror="window.__xss=3">'


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProcess]:
    with running_stack(tmp_path_factory.mktemp("console") / ".local") as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as driver:
        yield driver


def org(stack: StackProcess) -> dict[str, Any]:
    first: dict[str, Any] = stack.info["orgs"][0]
    return first


def console_link(stack: StackProcess, token: str) -> str:
    return f"{stack.info['api_url']}/console#token={token}"


def api(stack: StackProcess, path: str, token: str | None = None) -> Any:
    status, body = http("GET", f"{stack.info['api_url']}{path}", token=token or org(stack)["admin_token"])
    assert status == 200, (path, status, body)
    return body


def delivery(stack: StackProcess, webhook_id: str, token: str | None = None) -> dict[str, Any]:
    """The lookup by webhook id; {} until the processor has logged it (404 before)."""
    from urllib.parse import quote

    url = f"{stack.info['api_url']}/webhook-metrics/delivery?webhook_id={quote(webhook_id, safe='')}"
    status, body = http("GET", url, token=token or org(stack)["admin_token"])
    assert status in (200, 404), (status, body)
    return body if status == 200 else {}


def open_console(browser: Any, stack: StackProcess, token: str) -> None:
    """A fresh tab state (nothing in sessionStorage), then the console link; waits for its data."""
    browser.get(f"{stack.info['api_url']}/console")
    browser.execute_script("sessionStorage.clear()")
    browser.get("about:blank")
    browser.get_log("browser")  # drop what came before
    browser.get(console_link(stack, token))


def loaded_after(browser: Any, since_ms: float, timeout_s: float = 20) -> None:
    """Wait until the page has rendered a refresh that started after `since_ms` (epoch ms)."""

    def rendered() -> bool:
        stamp = browser.execute_script("return document.body.dataset.loaded || ''")
        return bool(stamp) and int(stamp) > since_ms

    wait_for(rendered, timeout_s)


def click_text(browser: Any, table: str, text: str) -> bool:
    """Click the control showing `text` in a table (False while the refresh is redrawing it)."""
    from selenium.common.exceptions import StaleElementReferenceException

    try:
        for button in browser.find_elements("css selector", f"#{table} button.link"):
            if button.text == text:
                button.click()
                return True
    except StaleElementReferenceException:
        pass
    return False


def now_ms() -> float:
    return time.time() * 1000


def severe(log: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [entry for entry in log if entry["level"] in ("SEVERE", "WARNING")]


def cards(browser: Any) -> dict[str, dict[str, str]]:
    return {
        c.get_attribute("data-metric"): {
            "value": c.get_attribute("data-value"),
            "state": c.get_attribute("data-state"),
            "text": c.find_element("css selector", ".value").text,
        }
        for c in browser.find_elements("css selector", ".number")
    }


def book_some(stack: StackProcess) -> None:
    """Bookings (one conflicting) and webhooks, so each number has something to count."""
    token = org(stack)["token"]
    day = 10 + uuid.uuid4().int % 15
    body = {
        "contact_id": str(uuid.uuid4()),
        "scheduled_at": f"2031-03-{day:02d}T{9 + uuid.uuid4().int % 8:02d}:00:00Z",
        "duration_minutes": 30,
    }
    status, _ = http("POST", f"{stack.info['api_url']}/appointments", token=token, body=body)
    assert status in (201, 409)
    status, _ = http("POST", f"{stack.info['api_url']}/appointments", token=token, body=body)
    assert status == 409
    webhook_id = f"msg_{uuid.uuid4().hex}"
    data = {
        "contact_id": str(uuid.uuid4()),
        "scheduled_at": f"2032-{1 + uuid.uuid4().int % 12:02d}-0{1 + uuid.uuid4().int % 9}T10:00:00Z",
        "duration_minutes": 15,
    }
    assert (
        post_webhook(stack.info["api_url"], org(stack), "appointment.book", data, webhook_id=webhook_id)[0]
        == 202
    )
    wait_for(lambda: delivery(stack, webhook_id).get("status") == "completed")


def test_the_console_serves_static_files_only_under_a_strict_content_security_policy(
    stack: StackProcess,
) -> None:
    import urllib.request

    base = stack.info["api_url"]
    # When the page and its files are fetched without any token
    for path, kind in (
        ("/console", "text/html"),
        ("/console/console.js", "text/javascript"),
        ("/console/console.css", "text/css"),
        ("/console/chart.umd.min.js", "text/javascript"),
    ):
        with urllib.request.urlopen(base + path, timeout=10) as answer:  # noqa: S310 - loopback
            # Then each is served, as what it is, with a CSP forbidding inline script and other origins
            assert answer.status == 200
            assert answer.headers["content-type"].startswith(kind)
            csp = answer.headers["content-security-policy"]
            assert "default-src 'none'" in csp and "script-src 'self';" in csp
            assert "unsafe-inline" not in csp and "http" not in csp and "*" not in csp
            assert answer.headers["x-content-type-options"] == "nosniff"
    # And nothing else is: no other file, no path out of the static folder
    for path in ("/console/handler.py", "/console/..%2Fhandler.py", "/console/nope.js"):
        status, _ = http("GET", base + path)
        assert status == 404, path
    # And the page has no inline script or style and loads nothing from elsewhere
    with urllib.request.urlopen(base + "/console", timeout=10) as answer:  # noqa: S310 - loopback
        page = answer.read().decode()
    assert "<script>" not in page and "<style" not in page and " style=" not in page
    assert not re.search(r"\son\w+=", page)  # no event-handler attribute
    assert "http" not in page.replace('href="console/', "").replace('src="console/', "").lower()


def test_the_page_loads_with_no_console_error_and_keeps_the_token_out_of_the_url(
    stack: StackProcess, browser: Any
) -> None:
    admin = org(stack)["admin_token"]
    # Given the console link make local prints, with an admin's token in its fragment
    printed = [line for line in stack.log().splitlines() if "console: " in line]
    assert printed and console_link(stack, admin) in printed[0]
    # When it is opened in the browser
    started = now_ms()
    open_console(browser, stack, admin)
    loaded_after(browser, started)
    # Then the page rendered its data without a single console error or warning
    assert severe(browser.get_log("browser")) == []
    # And the token left the address bar for this tab's sessionStorage, and nowhere else
    assert "token" not in browser.current_url and admin not in browser.current_url
    assert browser.execute_script("return sessionStorage.getItem('slotguard.token')") == admin
    assert browser.execute_script("return localStorage.length") == 0
    assert browser.execute_script("return document.cookie") == ""
    # And the token is in no request line the stack logged (a fragment is never sent)
    access = [line for line in stack.log().splitlines() if "GET /" in line]
    assert access and not any(admin in line for line in access)
    # And the page says who it is for
    assert org(stack)["org_id"] in browser.find_element("id", "who").text


def test_each_of_the_four_numbers_is_what_the_api_answers(stack: StackProcess, browser: Any) -> None:
    # Given bookings (one refused as a conflict) and a webhook booking
    book_some(stack)
    wait_for(lambda: api(stack, "/booking-metrics?range=24h")["attempted"] >= 2)
    open_console(browser, stack, org(stack)["admin_token"])
    # When the page has refreshed after the API's answers were read
    stats = api(stack, "/webhook-metrics/delivery-stats?range=24h")
    health = api(stack, "/webhook-metrics/queue-health")
    bookings = api(stack, "/booking-metrics?range=24h")
    read_at = now_ms()
    loaded_after(browser, read_at)
    shown = cards(browser)
    # Then each number is the API's, shown against its threshold
    rate = stats["totals"]["success_rate"]
    assert float(shown["success_rate"]["value"]) == rate
    assert shown["success_rate"]["text"] == f"{rate * 100:.2f} %"
    assert shown["success_rate"]["state"] == ("ok" if rate > 0.99 else "bad")
    dead = health["org"]["dead_letter"]
    assert shown["dead_letters"] == {
        "value": str(dead),
        "state": "ok" if dead < 10 else "bad",
        "text": str(dead),
    }
    avg = bookings["avg_booking_ms"]
    assert float(shown["avg_booking_ms"]["value"]) == avg
    assert shown["avg_booking_ms"]["text"] == f"{avg:.2f} ms"
    assert shown["avg_booking_ms"]["state"] == ("ok" if avg < 200 else "bad")
    busy = bookings["busy_rate"]
    assert float(shown["busy_rate"]["value"]) == busy
    assert shown["busy_rate"]["text"] == f"{busy * 100:.2f} %"
    assert shown["busy_rate"]["state"] == ("ok" if busy < 0.01 else "bad")
    # And the charts were drawn from the same answers (one bar per event type)
    labels = browser.execute_script("return Chart.getChart('chart-types').data.labels")
    assert labels == [t["event_type"] for t in stats["by_event_type"]]
    assert severe(browser.get_log("browser")) == []


def test_a_dead_letter_appears_and_an_admin_redrives_it(stack: StackProcess, browser: Any) -> None:
    admin = org(stack)["admin_token"]
    open_console(browser, stack, admin)
    # Given an invalid webhook (a booking without its fields): dead-lettered at once
    webhook_id = f"msg_dead_{uuid.uuid4().hex}"
    assert (
        post_webhook(stack.info["api_url"], org(stack), "appointment.book", {}, webhook_id=webhook_id)[0]
        == 202
    )
    wait_for(lambda: delivery(stack, webhook_id).get("status") == "dead_letter")
    # When the page refreshes, it lists the dead letter with a redrive control
    selector = f'#dead-letters button.redrive[data-job-id="{webhook_id}"]'
    button = wait_for(lambda: browser.find_elements("css selector", selector), timeout_s=20)[0]
    assert not browser.find_element("id", "redrive-all").get_attribute("hidden")
    # And the admin redrives it
    button.click()
    # Then the page says so, and the API shows it redriven: back on the queue, attempted again
    wait_for(lambda: "Redriven: 1" in browser.find_element("id", "message").text)
    again = wait_for(lambda: (d := delivery(stack, webhook_id)).get("attempts", 0) >= 2 and d)
    assert len(again["redrives"]) == 1
    assert [a["result"] for a in again["attempt_history"]] == ["dead_letter", "dead_letter"]
    assert again["outcome"] == "invalid"  # still invalid: it can never succeed
    # And its id among the failures opens its attempt history on the page
    wait_for(lambda: click_text(browser, "failures", webhook_id))
    shown = wait_for(lambda: "Attempt 2" in (t := browser.find_element("id", "lookup-result").text) and t)
    assert "Attempt 1" in shown and "invalid_payload" in shown
    assert severe(browser.get_log("browser")) == []


def test_a_member_sees_no_redrive_control(stack: StackProcess, browser: Any) -> None:
    member = org(stack)["token"]
    # Given a dead letter in the org
    webhook_id = f"msg_member_{uuid.uuid4().hex}"
    assert (
        post_webhook(stack.info["api_url"], org(stack), "appointment.cancel", {}, webhook_id=webhook_id)[0]
        == 202
    )
    wait_for(lambda: delivery(stack, webhook_id).get("status") == "dead_letter")
    # When a member opens the console
    started = now_ms()
    open_console(browser, stack, member)
    loaded_after(browser, started)
    # Then the dead letters are listed, without any redrive control
    wait_for(lambda: webhook_id in browser.find_element("id", "dead-letters").text)
    assert browser.find_elements("css selector", "button.redrive") == []
    assert browser.find_element("id", "redrive-all").get_attribute("hidden")
    assert "member" in browser.find_element("id", "who").text
    # And the API refuses a member's redrive anyway
    status, body = http(
        "POST", f"{stack.info['api_url']}/webhook-metrics/dead-letter-queue/redrive", token=member, body={}
    )
    assert status == 403 and body["error"]["code"] == "forbidden"


def test_a_wrong_token_shows_a_clear_message(stack: StackProcess, browser: Any) -> None:
    # When the console is opened with a token the API refuses
    open_console(browser, stack, "not-a-token")
    message = wait_for(lambda: browser.find_element("id", "message").text)
    # Then it says so plainly, shows no data, and asks for a token
    assert "token was refused" in message and "401" in message
    assert browser.find_element("id", "console").get_attribute("hidden")
    assert browser.find_element("id", "signin").is_displayed()
    # And a valid token pasted into the form opens the console
    started = now_ms()
    browser.find_element("id", "token").send_keys(org(stack)["token"])
    browser.find_element("id", "use-token").click()
    loaded_after(browser, started)
    assert not browser.find_element("id", "console").get_attribute("hidden")
    assert not browser.find_element("id", "message").is_displayed()


def test_a_webhook_carrying_markup_executes_nothing(stack: StackProcess, browser: Any) -> None:
    api_url = stack.info["api_url"]
    # Given webhooks whose type, payload and error hold markup: an unknown type (ignored), and a
    # booking whose data has a field named with markup (invalid: its error names the field)
    ignored_id = f"msg_xss_{uuid.uuid4().hex}"
    invalid_id = f'<img src=x onerror="window.__xss=4">{uuid.uuid4().hex}'
    assert post_webhook(api_url, org(stack), XSS_TYPE, {"note": XSS_TEXT}, webhook_id=ignored_id)[0] == 202
    assert (
        post_webhook(api_url, org(stack), "appointment.book", {XSS_TEXT: XSS_TEXT}, webhook_id=invalid_id)[0]
        == 202
    )
    wait_for(lambda: delivery(stack, ignored_id).get("outcome") == "ignored")
    wait_for(lambda: delivery(stack, invalid_id).get("status") == "dead_letter")
    # When the console shows them (event types, ids, errors) and the webhook is looked up
    started = now_ms()
    open_console(browser, stack, org(stack)["admin_token"])
    loaded_after(browser, started)
    wait_for(lambda: XSS_TYPE in browser.find_element("id", "types-table").text)
    wait_for(lambda: invalid_id in browser.find_element("id", "dead-letters").text)
    browser.find_element("id", "lookup-id").send_keys(invalid_id)
    browser.find_element("id", "lookup-go").click()
    wait_for(lambda: "invalid" in browser.find_element("id", "lookup-result").text)
    # Then the markup is shown as text, and none of it became an element or ran
    assert browser.execute_script("return window.__xss") is None
    assert browser.find_elements("css selector", "main img, main script") == []
    # (the error names the field as JSON: its quotes escaped, its markup as sent)
    assert "</script><script>window.__xss=2</script>" in browser.find_element("id", "dead-letters").text
    labels = browser.execute_script("return Chart.getChart('chart-types').data.labels")
    assert XSS_TYPE in labels
    # And the browser saw nothing to refuse (no CSP violation, no image load attempted)
    assert severe(browser.get_log("browser")) == []


def test_looking_up_a_webhook_shows_its_outcome(stack: StackProcess, browser: Any) -> None:
    api_url = stack.info["api_url"]
    # Given a webhook booking a slot, and a second one for the same slot (refused: slot taken)
    data = {"contact_id": str(uuid.uuid4()), "scheduled_at": "2033-05-02T09:00:00Z", "duration_minutes": 60}
    first, second = f"msg_first_{uuid.uuid4().hex}", f"msg_second_{uuid.uuid4().hex}"
    assert post_webhook(api_url, org(stack), "appointment.book", data, webhook_id=first)[0] == 202
    wait_for(lambda: delivery(stack, first).get("outcome") == "applied")
    assert post_webhook(api_url, org(stack), "appointment.book", data, webhook_id=second)[0] == 202
    refused = wait_for(lambda: (d := delivery(stack, second)).get("outcome") and d)
    assert refused["outcome"] == "refused" and refused["reason"] == "slot_conflict"
    assert refused["detail"]["conflicts"]
    # When it is looked up on the page
    started = now_ms()
    open_console(browser, stack, org(stack)["token"])
    loaded_after(browser, started)
    browser.find_element("id", "lookup-id").send_keys(second)
    browser.find_element("id", "lookup-go").click()
    result = wait_for(lambda: browser.find_element("id", "lookup-result").text)
    # Then the page shows its outcome, the reason and the conflicting appointment
    assert "refused" in result and "slot_conflict" in result
    assert refused["detail"]["conflicts"][0] in result
    # And an unknown id says so
    browser.find_element("id", "lookup-id").clear()
    browser.find_element("id", "lookup-id").send_keys("msg_nobody_sent_this")
    browser.find_element("id", "lookup-go").click()
    wait_for(lambda: "No webhook with this id" in browser.find_element("id", "lookup-result").text)


def test_a_screenshot_of_the_console_is_saved(
    stack: StackProcess, browser: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # Given the console with data on it
    book_some(stack)
    started = now_ms()
    open_console(browser, stack, org(stack)["admin_token"])
    loaded_after(browser, started)
    # When the suite takes a screenshot (SLOTGUARD_CONSOLE_SCREENSHOT: where to keep it too)
    path = tmp_path_factory.mktemp("screenshot") / "console.png"
    assert browser.save_screenshot(str(path))
    extra = os.environ.get("SLOTGUARD_CONSOLE_SCREENSHOT")
    if extra:
        Path(extra).write_bytes(path.read_bytes())
    # Then it is a PNG a person can look at
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    print(f"console screenshot: {path}")


def test_the_committed_chart_library_is_the_locked_npm_package() -> None:
    lock = json.loads((ROOT / "package-lock.json").read_text())
    package = json.loads((ROOT / "package.json").read_text())
    locked = lock["packages"]["node_modules/chart.js"]["version"]
    # The version is pinned exactly, and the lockfile holds it
    assert package["dependencies"]["chart.js"] == locked
    shipped = (ROOT / "functions" / "console" / "static" / "chart.umd.min.js").read_text()
    assert f"Chart.js v{locked}\n" in shipped[:200]
    # And where node_modules is installed (make synth, make test), the shipped file is its copy
    installed = ROOT / "node_modules" / "chart.js" / "dist" / "chart.umd.min.js"
    if installed.exists():
        assert installed.read_text() == shipped, "run: make console-vendor"
