"""One PostgreSQL connection per Lambda container, opened lazily and reused.

Written for RDS Proxy: autocommit (each API function call is its own transaction),
server-side prepared statements off (prepare_threshold=None), and the client's own SQL
never uses SET, set_config, advisory locks, temp tables or cursors, so the proxy can
multiplex the connection instead of pinning it.
"""

from __future__ import annotations

import contextlib
import select
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, LiteralString, Protocol

import psycopg
from psycopg.rows import tuple_row

from slotguard.aws.rds import generate_auth_token
from slotguard.config import DatabaseSettings
from slotguard.errors import Busy, DatabaseUnavailable
from slotguard.observability import logger


class PasswordProvider(Protocol):
    def password(self) -> str | None: ...


class StaticPassword:
    def __init__(self, password: str | None) -> None:
        self._password = password

    def password(self) -> str | None:
        return self._password


class IamTokenProvider:
    """Caches an RDS IAM auth token and replaces it well before its 15 minutes run out."""

    TOKEN_LIFETIME_S = 15 * 60

    def __init__(
        self,
        generate: Callable[[], str],
        refresh_after_s: float = 10 * 60,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < refresh_after_s < self.TOKEN_LIFETIME_S:
            raise ValueError("refresh_after_s must be inside the token's 15 minute lifetime")
        self._generate = generate
        self._refresh_after_s = refresh_after_s
        self._clock = clock
        self._token: str | None = None
        self._issued_at = 0.0

    def password(self) -> str:
        now = self._clock()
        if self._token is None or now - self._issued_at >= self._refresh_after_s:
            self._token = self._generate()
            self._issued_at = now
        return self._token


def password_provider_for(settings: DatabaseSettings) -> PasswordProvider:
    if settings.db_auth == "iam":
        host = settings.db_host
        assert host is not None  # checked by DatabaseSettings
        return IamTokenProvider(
            lambda: generate_auth_token(host, settings.db_port, settings.db_user, settings.aws_region)
        )
    return StaticPassword(settings.db_password)


def _dropped_by_server(conn: psycopg.Connection[Any]) -> bool:
    """Whether the server has closed an idle connection: nothing is owed to an idle autocommit
    connection, so anything readable on its socket is the server's goodbye (a FATAL from
    pg_terminate_backend or a shutdown, the proxy's idle timeout closing it, a failover's reset)
    followed by EOF. Checked without a round trip, before a statement is sent on it."""
    try:
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
    except (OSError, ValueError, psycopg.Error):
        return True
    return bool(readable)


def proxy_protocol_options(libpq_version: int | None = None) -> dict[str, str]:
    """What RDS Proxy speaks, pinned in the client: it "doesn't support direct SSL negotiation
    mode" and "only supports version 3.0 of the PostgreSQL messaging protocol" (RDS User Guide,
    Quotas and limitations for RDS Proxy). libpq 17 added the first choice and libpq 18 the
    protocol range; their defaults are the proxy's today, and pinning them keeps it so whatever
    a later libpq or a PGSSLNEGOTIATION/PGMAXPROTOCOLVERSION in the environment would choose.
    An older libpq, which knows neither option, gets neither (it speaks only these)."""
    version = psycopg.pq.version() if libpq_version is None else libpq_version
    options: dict[str, str] = {}
    if version >= 170000:
        options["sslnegotiation"] = "postgres"
    if version >= 180000:
        options["max_protocol_version"] = "3.0"
    return options


def _not_sent(exc: psycopg.OperationalError) -> bool:
    """libpq failed to write the statement: the server cannot have run it."""
    return "could not send data to server" in str(exc)


class Database:
    def __init__(
        self,
        settings: DatabaseSettings,
        passwords: PasswordProvider | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._passwords = passwords or password_provider_for(settings)
        self._clock = clock
        self._conn: psycopg.Connection[Any] | None = None
        self._last_used = 0.0
        self._in_transaction = False

    def _connect(self) -> psycopg.Connection[Any]:
        s = self._settings
        kwargs: dict[str, Any] = {
            "autocommit": True,
            "prepare_threshold": None,
            "connect_timeout": s.db_connect_timeout_s,
            "row_factory": tuple_row,
            "application_name": "slotguard",
            **proxy_protocol_options(),
        }
        password = self._passwords.password()
        if password is not None:
            kwargs["password"] = password
        if s.db_sslrootcert:
            kwargs["sslrootcert"] = s.db_sslrootcert
        if s.database_url:
            if s.login_role_overrides_url:
                kwargs["user"] = s.db_user
            return psycopg.connect(s.database_url, **kwargs)
        return psycopg.connect(
            host=s.db_host,
            port=s.db_port,
            dbname=s.db_name,
            user=s.db_user,
            sslmode=s.db_sslmode,
            **kwargs,
        )

    def _connection(self) -> psycopg.Connection[Any]:
        now = self._clock()
        if self._conn is not None and not self._in_transaction:
            if self._conn.closed or self._conn.broken:
                self._discard()
            elif now - self._last_used > self._settings.db_max_idle_s:
                logger.info(
                    "replacing a connection idle past the bound", extra={"idle_s": now - self._last_used}
                )
                self._discard()
            elif _dropped_by_server(self._conn):
                logger.info("the server closed the idle connection: reconnecting before the statement")
                self._discard()
        if self._conn is None:
            try:
                self._conn = self._connect()
            except psycopg.OperationalError as exc:
                logger.warning("database connect failed", extra={"error": type(exc).__name__})
                raise DatabaseUnavailable("the database is unavailable, retry shortly") from exc
        self._last_used = now
        return self._conn

    def _discard(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
        self._conn = None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Group several calls into one transaction (commit on success, roll back on error)."""
        conn = self._connection()
        self._in_transaction = True
        try:
            with conn.transaction():
                yield
        except DatabaseUnavailable:
            self._discard()
            raise
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            self._discard()
            raise DatabaseUnavailable("the database is unavailable, retry shortly") from exc
        finally:
            self._in_transaction = False

    def scalar(self, query: LiteralString, params: Sequence[Any], *, retry_safe: bool = False) -> Any:
        """Run one statement (one SQL function call) and return the first column of its row.

        A reused connection the server has dropped is replaced before the statement is sent
        (every statement, retry-safe or not). After a failure, the statement is retried once on
        a fresh connection when it cannot have reached the server (libpq could not send it), or
        when it is `retry_safe` (reads, and writes whose repeat is a no-op).
        """
        for attempt in (1, 2):
            conn = self._connection()
            try:
                row = conn.execute(query, params).fetchone()
            except psycopg.errors.QueryCanceled as exc:
                # The role's statement_timeout: the database is overloaded, not the request wrong.
                raise Busy("the database took too long to answer, retry shortly") from exc
            except (psycopg.errors.LockNotAvailable, psycopg.errors.DeadlockDetected) as exc:
                # A lock not granted within lock_timeout (or given up to break a deadlock) where the
                # SQL function does not answer `busy` itself, such as an INSERT waiting on the
                # exclusion constraint for another transaction's row: contention, not an outage.
                # The statement's transaction is rolled back and the connection stays healthy.
                raise Busy("the calendar is busy, retry shortly") from exc
            except psycopg.OperationalError as exc:
                if self._in_transaction:
                    raise DatabaseUnavailable("the database is unavailable, retry shortly") from exc
                self._discard()
                if attempt == 1 and (retry_safe or _not_sent(exc)):
                    continue
                raise DatabaseUnavailable("the database is unavailable, retry shortly") from exc
            finally:
                self._last_used = self._clock()
            return None if row is None else row[0]
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._discard()
