// slotguard operations console. Everything shown comes from the bearer-authenticated API of this
// origin, called with the token the user gave; everything that came from a webhook (event types,
// ids, errors) is put into the page as text (textContent), never as HTML.
"use strict";

(function () {
  const TOKEN_KEY = "slotguard.token";
  const REFRESH_MS = 5000;
  const API = new URL(".", window.location.href); // the API's root: where /console is served from
  const $ = (id) => document.getElementById(id);
  const charts = {};
  let timer = null;
  let busy = false;

  // -- the token: from the URL fragment (never sent to a server) into sessionStorage ---------
  function takeTokenFromFragment() {
    const params = new URLSearchParams(window.location.hash.replace(/^#/, ""));
    const token = params.get("token");
    if (token) {
      sessionStorage.setItem(TOKEN_KEY, token);
      history.replaceState(null, "", window.location.pathname + window.location.search);
    }
  }
  const token = () => sessionStorage.getItem(TOKEN_KEY);

  function claims() {
    // Shown and used to hide admin controls only; the API decides what the token may do.
    try {
      const part = token().split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      return JSON.parse(atob(part + "===".slice((part.length + 3) % 4)));
    } catch (e) {
      return {};
    }
  }
  const isAdmin = () => claims().role === "admin";

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  async function api(method, path, body) {
    const init = { method, headers: { Authorization: "Bearer " + token() }, cache: "no-store" };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(new URL(path, API), init);
    } catch (e) {
      throw new ApiError(0, "The API could not be reached: " + e.message);
    }
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      const message = (data.error && data.error.message) || data.message || response.statusText;
      throw new ApiError(response.status, message);
    }
    return data;
  }

  // -- small DOM helpers: text only ------------------------------------------------------------
  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }
  function row(cells) {
    const tr = document.createElement("tr");
    for (const cell of cells) tr.append(cell instanceof Node ? cell : el("td", cell));
    return tr;
  }
  const when = (iso) => (iso ? new Date(iso).toLocaleString() : "—");
  const pct = (x) => (x * 100).toFixed(2) + " %";

  function showMessage(text, info) {
    const box = $("message");
    box.textContent = text;
    box.className = info ? "message info" : "message";
    box.hidden = !text;
  }

  // -- the four numbers ---------------------------------------------------------------------------
  function setNumber(metric, value, text, healthy) {
    const card = document.querySelector(`.number[data-metric="${metric}"]`);
    card.dataset.value = value === null || value === undefined ? "" : String(value);
    card.querySelector(".value").textContent = text;
    card.classList.remove("ok", "bad", "none");
    card.classList.add(healthy === null ? "none" : healthy ? "ok" : "bad");
    card.dataset.state = healthy === null ? "none" : healthy ? "ok" : "bad";
  }

  function renderNumbers(stats, health, bookings) {
    const t = stats.totals;
    if (t.total === 0) setNumber("success_rate", t.success_rate, "no deliveries", null);
    else setNumber("success_rate", t.success_rate, pct(t.success_rate), t.success_rate > 0.99);
    const dead = health.org.dead_letter;
    setNumber("dead_letters", dead, String(dead), dead < 10);
    if (bookings === null) {
      setNumber("avg_booking_ms", null, "unavailable", null);
      setNumber("busy_rate", null, "unavailable", null);
      return;
    }
    const avg = bookings.avg_booking_ms;
    if (avg === null) setNumber("avg_booking_ms", null, "no bookings", null);
    else setNumber("avg_booking_ms", avg, avg.toFixed(2) + " ms", avg < bookings.thresholds.avg_booking_ms);
    if (bookings.attempted === 0) setNumber("busy_rate", bookings.busy_rate, "no bookings", null);
    else setNumber("busy_rate", bookings.busy_rate, pct(bookings.busy_rate), bookings.busy_rate < bookings.thresholds.busy_rate);
  }

  // -- queue health -------------------------------------------------------------------------------
  function renderHealth(health) {
    const badge = $("health-status");
    badge.textContent = health.status;
    badge.className = "badge " + health.status;
    const reasons = $("health-reasons");
    reasons.replaceChildren(...health.reasons.map((r) => el("li", r)));
    const q = health.queue, d = health.dead_letter_queue, o = health.org;
    // The shared queues' depths are for admins: a member's answer has them null.
    const adminsOnly = (name) => row([el("th", name), "shown to admins only", "", "", ""]);
    $("health-table").tBodies[0].replaceChildren(
      q ? row([el("th", "Queue"), `waiting ${q.waiting}`, `in flight ${q.in_flight}`, `delayed ${q.delayed}`,
        `oldest ${q.oldest_message_age_s === null ? "—" : q.oldest_message_age_s + " s"}`]) : adminsOnly("Queue"),
      d ? row([el("th", "Dead-letter queue"), `waiting ${d.waiting}`, `in flight ${d.in_flight}`,
        `delayed ${d.delayed}`, `depth ${d.depth}`]) : adminsOnly("Dead-letter queue"),
      row([el("th", "This org"), `pending ${o.pending}`, `processing ${o.processing}`, `failed ${o.failed}`,
        `dead letters ${o.dead_letter}`]),
      row([el("th", "Worker"), `state ${health.worker.state}`, `batch ${health.worker.batch_size}`,
        `concurrency ${health.worker.maximum_concurrency}`, ""]),
    );
  }

  // -- charts ---------------------------------------------------------------------------------------
  const COLORS = { completed: "#1a7f37", failed: "#bf8700", dead_letter: "#cf222e", in_progress: "#8c959f",
    p50: "#1f6feb", p95: "#8250df", p99: "#cf222e",
    applied: "#1a7f37", refused: "#bf8700", ignored: "#8c959f", invalid: "#cf222e" };

  function chart(id, type, labels, datasets, stacked) {
    const config = {
      type,
      data: { labels, datasets },
      options: {
        animation: false, responsive: true, maintainAspectRatio: false,
        plugins: { legend: { position: "bottom" } },
        scales: { x: { stacked: !!stacked }, y: { stacked: !!stacked, beginAtZero: true } },
      },
    };
    if (charts[id]) {
      charts[id].data = config.data;
      charts[id].update();
    } else {
      charts[id] = new window.Chart($(id), config);
    }
  }
  const bucketLabel = (iso, range) => {
    const d = new Date(iso);
    return range === "7d" ? d.toLocaleString([], { month: "short", day: "numeric", hour: "2-digit" })
      : d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  };

  function renderStats(stats) {
    const types = stats.by_event_type;
    const statuses = ["completed", "failed", "dead_letter", "in_progress"];
    const datasets = statuses.map((s) => ({ label: s.replace("_", " "), backgroundColor: COLORS[s],
      data: types.map((t) => t[s]), stack: "status" }));
    if (types.length && types[0].outcomes) {
      for (const o of ["applied", "refused", "ignored", "invalid"]) {
        datasets.push({ label: "outcome: " + o, backgroundColor: COLORS[o], data: types.map((t) => t.outcomes[o]),
          stack: "outcome" });
      }
    }
    chart("chart-types", "bar", types.map((t) => t.event_type), datasets, true);
    chart("chart-trend", "line", stats.trend.map((b) => bucketLabel(b.bucket_start, stats.range)),
      ["completed", "failed", "dead_letter"].map((s) => ({ label: s.replace("_", " "), borderColor: COLORS[s],
        backgroundColor: COLORS[s], data: stats.trend.map((b) => b[s]), tension: 0.2 })));
    $("types-table").tBodies[0].replaceChildren(...types.map((t) => row(
      [t.event_type, t.total, t.completed, t.failed, t.dead_letter, t.in_progress, pct(t.success_rate)])));
  }

  function renderLatency(latency) {
    chart("chart-latency", "line", latency.trend.map((b) => bucketLabel(b.bucket_start, latency.range)),
      ["p50", "p95", "p99"].map((p) => ({ label: p.toUpperCase(), borderColor: COLORS[p], backgroundColor: COLORS[p],
        data: latency.trend.map((b) => (b.count ? b[p] : null)), spanGaps: true, tension: 0.2 })));
    const o = latency.overall;
    $("latency-overall").textContent =
      `Whole range: ${o.count} completed · P50 ${o.p50} · P95 ${o.p95} · P99 ${o.p99} · max ${o.max} ms`;
  }

  // -- failures and dead letters --------------------------------------------------------------------
  function idCell(id) {
    // the id, as a control that looks the webhook up (its attempts, one by one, and its outcome)
    const td = el("td", null, "id");
    const link = el("button", id, "link");
    link.type = "button";
    link.title = "Show its attempts and outcome";
    link.addEventListener("click", () => {
      $("lookup-id").value = id;
      lookup();
      $("lookup").scrollIntoView();
    });
    td.append(link);
    return td;
  }
  function renderFailures(list) {
    $("failures").tBodies[0].replaceChildren(...list.items.map((d) => row([
      idCell(d.job_id), d.event_type, d.status, `${d.attempts} / ${d.max_attempts}`, when(d.last_attempt_at),
      el("td", d.error_message || "", "error")])));
  }

  function renderDeadLetters(list) {
    const admin = isAdmin();
    $("redrive-all").hidden = !admin || list.items.length === 0;
    $("dead-letters").tBodies[0].replaceChildren(...list.items.map((d) => {
      const action = el("td");
      if (admin) {
        const button = el("button", "Redrive", "redrive");
        button.type = "button";
        button.dataset.jobId = d.job_id;
        button.addEventListener("click", () => redrive([d.job_id]));
        action.append(button);
      }
      return row([idCell(d.job_id), d.event_type, `${d.attempts} / ${d.max_attempts}`, when(d.last_attempt_at),
        el("td", d.error_message || "", "error"), action]);
    }));
  }

  async function redrive(jobIds) {
    try {
      const result = await api("POST", "webhook-metrics/dead-letter-queue/redrive", jobIds ? { job_ids: jobIds } : {});
      showMessage(`Redriven: ${result.redriven}` + (result.not_sent.length ? `, not sent: ${result.not_sent.length}` : ""), true);
      refresh();
    } catch (e) {
      showMessage(describe(e));
    }
  }

  // -- one webhook's outcome ------------------------------------------------------------------------
  async function lookup() {
    const id = $("lookup-id").value.trim();
    const out = $("lookup-result");
    if (!id) return;
    try {
      const d = await api("GET", "webhook-metrics/delivery?webhook_id=" + encodeURIComponent(id));
      const dl = el("dl", null, "lookup");
      const add = (k, v) => dl.append(el("dt", k), el("dd", v === null || v === undefined ? "—" : v));
      add("Webhook id", d.job_id);
      add("Event type", d.event_type);
      add("Status", d.status);
      add("Outcome", d.outcome === null ? "none yet" : d.outcome);
      if (d.reason) add("Reason", d.reason);
      const detail = d.detail || {};
      if (Array.isArray(detail.conflicts) && detail.conflicts.length) {
        add("Conflicting appointments", detail.conflicts.join(", "));
      }
      if (detail.appointment_id) add("Appointment", detail.appointment_id);
      if (d.outcome === "invalid" || d.status !== "completed") add("Error", d.error_message);
      add("Received", when(d.created_at));
      add("Attempts", `${d.attempts} / ${d.max_attempts}`);
      for (const a of d.attempt_history || []) {
        add(`Attempt ${a.attempt}`, `${when(a.at)} · ${a.result}${a.error ? " · " + a.error : ""}`);
      }
      out.replaceChildren(dl);
    } catch (e) {
      out.replaceChildren(el("p", e.status === 404 ? "No webhook with this id in this org." : describe(e), "muted"));
    }
  }

  // -- refresh --------------------------------------------------------------------------------------
  function describe(e) {
    if (e.status === 401) {
      return "The token was refused (401 Unauthorized): it is wrong, expired, or not for this API. Paste a valid token.";
    }
    if (e.status === 403) return "This needs an admin's token (403 Forbidden).";
    return (e.status ? `The API answered ${e.status}: ` : "") + e.message;
  }

  async function refresh() {
    if (busy || !token()) return;
    busy = true;
    const range = $("range").value;
    try {
      const [stats, health, latency, failures, dead] = await Promise.all([
        api("GET", `webhook-metrics/delivery-stats?range=${range}`),
        api("GET", "webhook-metrics/queue-health"),
        api("GET", `webhook-metrics/processing-time?range=${range}`),
        api("GET", "webhook-metrics/recent-failures?limit=20"),
        api("GET", "webhook-metrics/dead-letter-queue?limit=50"),
      ]);
      let bookings = null;
      try {
        bookings = await api("GET", `booking-metrics?range=${range}`);
      } catch (e) {
        if (e.status === 401) throw e;
      }
      $("console").hidden = false;
      $("signin").hidden = true;
      renderNumbers(stats, health, bookings);
      renderHealth(health);
      renderStats(stats);
      renderLatency(latency);
      renderFailures(failures);
      renderDeadLetters(dead);
      $("updated").textContent = "updated " + new Date().toLocaleTimeString();
      document.body.dataset.loaded = String(Date.now());
      if ($("message").className === "message") showMessage("");
    } catch (e) {
      showMessage(describe(e));
      if (e.status === 401) {
        $("console").hidden = true;
        $("signin").hidden = false;
        stop();
      }
    } finally {
      busy = false;
    }
  }

  function start() {
    const c = claims();
    $("who").textContent = c.org_id ? `org ${c.org_id} · ${c.role === "admin" ? "admin" : "member"}` : "";
    $("signout").hidden = false;
    refresh();
    stop();
    timer = setInterval(refresh, REFRESH_MS);
  }
  function stop() {
    if (timer) clearInterval(timer);
    timer = null;
  }

  document.addEventListener("DOMContentLoaded", () => {
    takeTokenFromFragment();
    $("range").addEventListener("change", refresh);
    $("redrive-all").addEventListener("click", () => redrive(null));
    $("lookup-go").addEventListener("click", lookup);
    $("lookup-id").addEventListener("keydown", (e) => { if (e.key === "Enter") lookup(); });
    $("signin-form").addEventListener("submit", (event) => {
      event.preventDefault(); // nothing is submitted anywhere: the token stays in this tab
      const value = $("token").value.trim();
      $("token").value = "";
      if (!value) return;
      sessionStorage.setItem(TOKEN_KEY, value);
      showMessage("");
      start();
    });
    $("signout").addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      stop();
      $("console").hidden = true;
      $("signin").hidden = false;
      $("signout").hidden = true;
      $("who").textContent = "";
    });
    if (token()) start();
    else $("signin").hidden = false;
  });
})();
