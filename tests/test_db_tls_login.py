"""The deployed way in: DB_HOST, DB_PORT, DB_NAME and DB_USER with DB_SSLMODE=verify-full against
the root file DB_SSLROOTCERT names, as the functions reach RDS Proxy (infra/stack.py's db_env),
with a password where the proxy takes an IAM token (the token is handed over as one).

Every other test reaches the embedded cluster by DATABASE_URL, on trust and in clear (the embedded
build has no TLS). Here the application reaches it as it reaches RDS Proxy: through a proxy that
takes PostgreSQL's SSLRequest, terminates TLS with a certificate a test CA issued for 127.0.0.1,
refuses anything else (a startup in clear; direct TLS, which RDS Proxy does not take either), and
passes the rest on to the cluster, which asks the application role for its password
(scram-sha-256)."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import select
import socket
import ssl
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from slotguard.config import DatabaseSettings
from slotguard.db.connection import Database
from slotguard.errors import DatabaseUnavailable
from tests.connection_cutter import accept_in_background

PASSWORD = "a-proxy-would-take-an-iam-token-here"


@dataclass
class TlsCluster:
    proxy: TlsTerminatingProxy
    root_file: Path  # the CA that issued the server's certificate
    other_root_file: Path  # a CA that did not

    def env(self, **overrides: str) -> dict[str, str]:
        """What the deployed functions are given (infra/stack.py), pointed at this cluster."""
        return {
            "DB_HOST": "127.0.0.1",
            "DB_PORT": str(self.proxy.port),
            "DB_NAME": "slotguard",
            "DB_USER": "slotguard_app",
            "DB_AUTH": "password",
            "DB_PASSWORD": PASSWORD,
            "DB_SSLMODE": "verify-full",
            "DB_SSLROOTCERT": str(self.root_file),
            "DB_CONNECT_TIMEOUT_S": "5",
            **overrides,
        }


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: str,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _write_ca(path: Path, name: str) -> ec.EllipticCurvePrivateKey:
    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(_certificate(name, key, name, key, ca=True).public_bytes(serialization.Encoding.PEM))
    return key


SSL_REQUEST, GSSENC_REQUEST = 80877103, 80877104  # PostgreSQL's request codes (protocol 3.0)


@dataclass
class TlsTerminatingProxy:
    """Takes a client's SSLRequest, answers 'S', completes the TLS handshake with `context`, then
    passes bytes both ways between the client and `target` in clear. A GSSENCRequest is declined
    ('N'); anything else is refused by closing the connection."""

    target: tuple[str, int]
    context: ssl.SSLContext
    sessions: list[str] = field(default_factory=list)  # each TLS session's protocol version
    _listener: socket.socket | None = None

    @property
    def port(self) -> int:
        assert self._listener is not None
        return int(self._listener.getsockname()[1])

    def start(self) -> TlsTerminatingProxy:
        self._listener = accept_in_background(
            lambda client: threading.Thread(target=self._serve, args=(client,), daemon=True).start()
        )
        return self

    def stop(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()

    def _serve(self, client: socket.socket) -> None:
        with contextlib.ExitStack() as stack:
            stack.enter_context(client)
            while True:
                header = client.recv(8, socket.MSG_WAITALL)
                if len(header) < 8:
                    return
                length, code = struct.unpack("!II", header)
                if (length, code) == (8, GSSENC_REQUEST):
                    client.sendall(b"N")
                    continue
                if (length, code) != (8, SSL_REQUEST):
                    return  # a startup in clear, or direct TLS: refused
                client.sendall(b"S")
                break
            try:
                tls = stack.enter_context(self.context.wrap_socket(client, server_side=True))
            except (ssl.SSLError, OSError):
                return  # the client did not trust our certificate, or gave up
            self.sessions.append(str(tls.version()))
            upstream = stack.enter_context(socket.create_connection(self.target))
            while True:
                if not tls.pending():
                    select.select([tls, upstream], [], [])
                for source, sink in ((tls, upstream), (upstream, tls)):
                    if source is tls and not tls.pending() and not _readable(tls):
                        continue
                    if source is upstream and not _readable(upstream):
                        continue
                    try:
                        data = source.recv(65536)
                    except (ssl.SSLError, OSError):
                        return
                    if not data:
                        return
                    sink.sendall(data)


def _readable(sock: socket.socket) -> bool:
    return bool(select.select([sock], [], [], 0)[0])


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsCluster]:
    from slotguard.db.migrate import ensure_app_login, migrate
    from slotguard_local.postgres import EmbeddedPostgres

    # Given a test CA, a certificate it issued for 127.0.0.1, and another CA that issued nothing
    pki = tmp_path_factory.mktemp("pki")
    ca_key = _write_ca(pki / "root.pem", "slotguard test root")
    _write_ca(pki / "other-root.pem", "an impostor's root")
    server_key = ec.generate_private_key(ec.SECP256R1())
    (pki / "server.key").write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    (pki / "server.crt").write_bytes(
        _certificate("127.0.0.1", server_key, "slotguard test root", ca_key, ca=False).public_bytes(
            serialization.Encoding.PEM
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki / "server.crt", pki / "server.key")
    # And a cluster with the schema, where the application role logs in only with its password
    server = EmbeddedPostgres(
        tmp_path_factory.mktemp("tls-pg") / "data", durable=False, max_connections=20
    ).start()
    proxy = None
    try:
        with psycopg.connect(server.admin_url, autocommit=True) as conn:
            conn.execute("CREATE DATABASE slotguard")
        admin_url = server.url("slotguard")
        migrate(admin_url)
        ensure_app_login(admin_url, password=PASSWORD)
        (server.data_dir / "pg_hba.conf").write_text(
            "host all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n"
        )
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute("SELECT pg_reload_conf()")
        proxy = TlsTerminatingProxy(("127.0.0.1", server.port), context).start()
        yield TlsCluster(proxy, pki / "root.pem", pki / "other-root.pem")
    finally:
        if proxy is not None:
            proxy.stop()
        server.stop(mode="immediate")


def _database(env: dict[str, str]) -> Database:
    return Database(DatabaseSettings.from_env(env))


def test_the_deployed_settings_log_in_over_verified_tls_with_a_password(tls_cluster: TlsCluster) -> None:
    # Given the settings the deployed functions get, pointed at the TLS-terminating proxy
    db = _database(tls_cluster.env())
    sessions = len(tls_cluster.proxy.sessions)
    # When the application runs a statement
    who = db.scalar("SELECT system_user", ())
    # Then it ran as the application role, which proved its password
    assert who == "scram-sha-256:slotguard_app"
    # And it reached the database over one TLS session, after checking the proxy's certificate
    assert tls_cluster.proxy.sessions[sessions:] == ["TLSv1.3"]


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param(
            {"DB_SSLROOTCERT": "other"}, id="a server certificate another root issued (an impostor)"
        ),
        pytest.param({"DB_HOST": "localhost"}, id="a server certificate that does not name the host"),
        pytest.param({"DB_PASSWORD": "not-the-password"}, id="a wrong password"),
        pytest.param({"DB_SSLMODE": "disable"}, id="no TLS"),
    ],
)
def test_a_login_that_cannot_be_verified_or_is_refused_is_database_unavailable(
    tls_cluster: TlsCluster, overrides: dict[str, str]
) -> None:
    # Given the deployed settings with one thing wrong
    if overrides.get("DB_SSLROOTCERT") == "other":
        overrides = {"DB_SSLROOTCERT": str(tls_cluster.other_root_file)}
    db = _database(tls_cluster.env(**overrides))
    # When the application runs a statement, then no connection is made: the caller is told the
    # database is unavailable (a 503, or a webhook's outage backoff), nothing else
    with pytest.raises(DatabaseUnavailable):
        db.scalar("SELECT 1", ())
