"""Every name the deployment uses, in one place."""

from __future__ import annotations

from dataclasses import dataclass

from slotguard.observability import METRICS_NAMESPACE

APP_DB_USER = "slotguard_app"
DB_NAME = "slotguard"
WEBHOOK_SECRET_PREFIX = "slotguard/webhooks/"  # noqa: S105 - a name prefix (+ org_id), not a secret


@dataclass(frozen=True)
class Names:
    stage: str

    @property
    def prefix(self) -> str:
        return f"slotguard-{self.stage}"

    def function(self, name: str) -> str:
        return f"{self.prefix}-{name.replace('_', '-')}"

    @property
    def queue(self) -> str:
        return f"{self.prefix}-webhooks"

    @property
    def dlq(self) -> str:
        return f"{self.prefix}-webhooks-dlq"

    @property
    def api(self) -> str:
        return f"{self.prefix}-api"

    @property
    def proxy(self) -> str:
        return f"{self.prefix}-proxy"

    @property
    def dashboard(self) -> str:
        return f"{self.prefix}-overview"

    @property
    def metrics_namespace(self) -> str:
        return METRICS_NAMESPACE
