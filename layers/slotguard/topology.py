"""The system's wiring, in one place: the HTTP routes and which function serves each, the
webhook event source settings, the cleanup schedule. The CDK app and the local stack both
import this, so what runs on a laptop cannot drift from what is deployed."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # API Gateway syntax: /appointments/{appointment_id}
    function: str  # folder under functions/
    authorized: bool = True  # behind the JWT authorizer
    # In AWS, served through CloudFront and AWS WAF (a rate limit per org path and per sender) on
    # an origin API of its own, not on the main HTTP API (docs/decisions.md, "Per-tenant
    # fairness"). The local front door serves it beside the others.
    via_edge: bool = False

    @property
    def is_api(self) -> bool:
        """A JSON API route (documented in the OpenAPI document); the console's serve static files."""
        return self.function != "console"

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"


ROUTES: tuple[Route, ...] = (
    Route("POST", "/appointments", "booking"),
    Route("GET", "/appointments", "booking"),
    Route("GET", "/appointments/{appointment_id}", "booking"),
    Route("POST", "/appointments/{appointment_id}/cancel", "booking"),
    Route("POST", "/appointments/{appointment_id}/reschedule", "booking"),
    Route("GET", "/appointments/{appointment_id}/history", "booking"),
    Route("GET", "/availability/check", "booking"),
    Route("GET", "/availability/slots", "booking"),
    Route("PUT", "/calendars/{calendar_id}/rules", "booking"),
    Route("GET", "/calendars/{calendar_id}/rules", "booking"),
    Route("GET", "/calendars/{calendar_id}/rules/history", "booking"),
    Route("GET", "/org/policy", "booking"),
    Route("PUT", "/org/policy", "booking"),
    Route("GET", "/webhook-metrics/queue-health", "metrics"),
    Route("GET", "/webhook-metrics/delivery-stats", "metrics"),
    Route("GET", "/webhook-metrics/recent-failures", "metrics"),
    Route("GET", "/webhook-metrics/dead-letter-queue", "metrics"),
    Route("POST", "/webhook-metrics/dead-letter-queue/redrive", "metrics"),
    Route("GET", "/webhook-metrics/processing-time", "metrics"),
    Route("GET", "/webhook-metrics/delivery", "metrics"),
    Route("GET", "/booking-metrics", "metrics"),
    Route("POST", "/webhooks/{org_id}", "webhook_receiver", authorized=False, via_edge=True),
    # The operations console: static files only (the page calls the routes above with its token)
    Route("GET", "/console", "console", authorized=False),
    Route("GET", "/console/{asset}", "console", authorized=False),
)
API_ROUTES: tuple[Route, ...] = tuple(r for r in ROUTES if r.is_api)


RECEIVE_BUDGET_FACTOR = 10


@dataclass(frozen=True)
class WebhookQueueSettings:
    max_attempts: int = 5  # processor's WEBHOOK_MAX_ATTEMPTS (the redrive's is 10 times that)
    batch_size: int = 10
    batching_window_s: int = 1
    maximum_concurrency: int = 5  # <= what the RDS Proxy can serve; >= 2 (Lambda's minimum)
    reconciler_maximum_concurrency: int = 2  # the DLQ's event source mapping (Lambda's minimum)
    processor_timeout_s: int = 30
    reconciler_timeout_s: int = 30
    backoff_base_s: int = 10
    backoff_cap_s: int = 900
    retention_days: int = 4  # SQS message retention of the webhook queue
    dlq_retention_days: int = 14  # of its DLQ: longer (expiry counts from the first enqueue); SQS's maximum

    @property
    def visibility_timeout_s(self) -> int:
        """AWS asks for at least six times the function timeout."""
        return 6 * self.processor_timeout_s

    @property
    def max_receive_count(self) -> int:
        return redrive_max_receive_count(self.max_attempts)

    @property
    def claim_stale_after_s(self) -> int:
        return self.visibility_timeout_s


def redrive_max_receive_count(max_attempts: int) -> int:
    """SQS's redrive (maxReceiveCount) is a backstop well above the application's retry budget:
    receives that never reach a claim (database down, another worker holding the row, a batch
    timeout) count too, so only the processor's own budget (attempts recorded in the delivery log)
    decides that a webhook is dead. The processor's database-down backoff grows with the receive
    count, so this many receives outlast a long outage (hours at the deployed settings)."""
    return RECEIVE_BUDGET_FACTOR * max_attempts


WEBHOOK_QUEUE = WebhookQueueSettings()

# The API functions' timeout (below the HTTP API's 30 s integration timeout).
API_TIMEOUT_S = 20
# The retention cleanup's timeout (batched deletes; one run an hour).
CLEANUP_TIMEOUT_S = 300


@dataclass(frozen=True)
class ReservedConcurrency:
    """Reserved concurrency per stage of the functions that have one (the others draw on the
    account's unreserved pool). With the queue consumers' maximum concurrency, the database-facing
    ones at once must fit the proxy's connection budget (tests/test_infra.py). The CDK app sets
    them; the local stack runs that many containers at most (the dev stage's)."""

    booking: int
    metrics: int
    cleanup: int = 1  # one retention run at a time (hourly schedule, retries)

    def of(self, function: str) -> int | None:
        value = getattr(self, function, None)
        return value if isinstance(value, int) else None


RESERVED_CONCURRENCY = {
    "dev": ReservedConcurrency(booking=20, metrics=5),
    # Sized from PROMISED_LOAD["prod"] with CAPACITY (docs/capacity.md): ~12 bookings in flight at
    # 200 JWT requests/s, twice that, rounded up. (It was 300: about 20 times the need, taken from the
    # account's pool and the proxy's connection budget for nothing.)
    "prod": ReservedConcurrency(booking=40, metrics=10),
}
CLEANUP_SCHEDULE_MINUTES = 60
# The stage default: the authenticated routes, twice prod's promised 200 requests/s (PROMISED_LOAD).
API_THROTTLE = {"rate_limit": 400, "burst_limit": 800}
# The public webhook route (no authorizer in front) has its own budget, on its own origin API behind
# the edge (infra/constructs/edge.py), so junk there cannot use up the authenticated routes' share,
# and vice versa. Sized so that one sender at the edge's per-sender limit (400/s in prod) beside
# twice the promised webhooks (2 x 200/s) still fits: one sender within its limit cannot starve the
# others (tests/test_edge.py). It was 50/s: at 200 webhooks/s three in four got 429.
WEBHOOK_THROTTLE = {"rate_limit": 1000, "burst_limit": 2000}


@dataclass(frozen=True)
class PromisedLoad:
    """The sustained load a stage promises to carry (docs/capacity.md): the limits above are sized
    from it, and a test checks that none is the first bottleneck below it."""

    bookings_per_s: int  # POST /appointments
    reads_per_s: int  # the other JWT routes (lists, availability, history, metrics)
    webhooks_per_s: int  # POST /webhooks/{org_id}, all orgs together
    webhooks_per_s_per_org: int  # what one org's senders may send: its fair share of the above


@dataclass(frozen=True)
class CapacityModel:
    """The model's assumptions (docs/capacity.md, where each comes from)."""

    headroom: float = 2.0  # every limit at least twice the promised load
    booking_request_s: float = 0.05  # a JWT route's time in the function, warm, proxy round trips included
    busy_share: float = 0.01  # bookings that wait out the lock (3 s): the KPI's 1 %
    processor_records_per_s: int = 100  # per concurrent processor (bench: ~1,200/s per process, /10 for AWS)


PROMISED_LOAD = {
    "dev": PromisedLoad(bookings_per_s=5, reads_per_s=15, webhooks_per_s=20, webhooks_per_s_per_org=5),
    "prod": PromisedLoad(bookings_per_s=50, reads_per_s=150, webhooks_per_s=200, webhooks_per_s_per_org=25),
}
CAPACITY = CapacityModel()


@dataclass(frozen=True)
class EdgeLimits:
    """AWS WAF's rate-based rules in front of the webhook route (per 60-second window, WAF's
    shortest): requests over them get 429 at the edge, before API Gateway's route throttle (one
    budget for every org) is touched. docs/capacity.md."""

    window_s: int
    per_org_path: int  # requests to one /webhooks/<org_id> path: junk at one org's path stays there
    per_sender: int  # requests from one IP address, whatever the paths: junk sprayed over many paths

    @classmethod
    def of(cls, load: PromisedLoad, headroom: float) -> EdgeLimits:
        window_s = 60
        return cls(
            window_s=window_s,
            per_org_path=int(load.webhooks_per_s_per_org * headroom * window_s),
            # one sender may carry every org's webhooks (a provider sending for all of them)
            per_sender=int(load.webhooks_per_s * headroom * window_s),
        )


EDGE_LIMITS = {stage: EdgeLimits.of(load, CAPACITY.headroom) for stage, load in PROMISED_LOAD.items()}
