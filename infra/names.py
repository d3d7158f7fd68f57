"""Every name the deployment uses, in one place.

Resources a prod stack retains on destroy (the database, its secret, queues, log groups, the alarm
key) get generated names, so a new stack of the same stage never collides with what was kept;
only resources that are deleted with the stack (functions, the proxy, the API, the dashboard)
have fixed names."""

from __future__ import annotations

from dataclasses import dataclass

from slotguard.observability import METRICS_NAMESPACE

APP_DB_USER = "slotguard_app"
RETENTION_DB_USER = "slotguard_retention"  # the retention cleanup's own login (migration 0007)
DB_LOGIN_USERS = (APP_DB_USER, RETENTION_DB_USER)
DB_NAME = "slotguard"
# Where a function finds the roots that RDS Proxy's certificate chains to: the layer is mounted at
# /opt and its packages under /opt/python (layers/slotguard/certs/ in the source tree).
PROXY_CA_BUNDLE = "/opt/python/slotguard/certs/amazon-trust-services.pem"


@dataclass(frozen=True)
class Names:
    stage: str

    @property
    def stack(self) -> str:
        return f"Slotguard-{self.stage}"

    @property
    def edge_stack(self) -> str:
        """The webhook edge's web ACL, in us-east-1 (infra/constructs/edge.py)."""
        return f"Slotguard-{self.stage}-edge"

    @property
    def prefix(self) -> str:
        return f"slotguard-{self.stage}"

    def function(self, name: str) -> str:
        return f"{self.prefix}-{name.replace('_', '-')}"

    @property
    def webhook_secret_prefix(self) -> str:
        """Per stage: in one account, the dev receiver must not read prod's signing secrets."""
        return f"slotguard/{self.stage}/webhooks/"

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
