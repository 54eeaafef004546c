#!/usr/bin/env python3
"""The restore drill: proves that Deni's books survive losing the PostgreSQL server.

On a PostgreSQL cluster of its own (initdb into a temporary folder, on 127.0.0.1 only), set up
as deploy/pgbackrest/ says (the shipped postgresql.conf lines and pgbackrest.conf, with only
paths and the port changed; the repository encrypted with a passphrase made for the run and
never written down), the drill:

 1. migrates Deni's schema (`deni db upgrade`) and writes loans and payments (Deni's services:
    members join, lenders are paid in by M-PESA, loans are approved and repaid);
 2. takes a full backup (`pgbackrest backup --type=full`); writes more (one member through
    `deni user create` and `deni wallet deposit`);
 3. notes the moment: a digest of every table, the trial balance (`deni report
    trial-balance`), and a named restore point (`pg_create_restore_point`);
 4. writes more again, and measures how long its last commit took to reach the repository
    without being pushed there (archive_timeout: the RPO);
 5. destroys the database (an immediate stop, the data folder deleted), restores it with
    pgBackRest to the restore point (`--type=name`), starts it, and times that (the RTO);
 6. proves: every table equals the moment's digest, the trial balance is the same,
    `deni ledger check` and `deni audit verify` pass, what came after the moment is absent
    (recovery stopped at the restore point, though later WAL was in the archive), the
    repository does not open without the passphrase, and Deni writes again.

Run it from the repository with the project's Python (pgBackRest and the PostgreSQL server
binaries installed: `make pgbackrest`):

    .venv/bin/python deploy/backup/drill.py [--port 18610] [--json drill.json] [--keep]

As root (CI) the PostgreSQL side runs as the `postgres` OS user (PostgreSQL refuses root);
otherwise as the caller. It exits 0 only if every proof holds, and prints what it measured.
tests/integration/test_backup_drill.py runs it in the PostgreSQL tier; docs/backups.md
reports its figures.
"""

from __future__ import annotations

import argparse
import configparser
import hashlib
import json
import os
import platform
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, select, text

from deni.adapters.db import tables
from deni.bootstrap import Deni, bootstrap
from deni.config import Settings
from deni.domain.users import nairobi_today
from deni.services import loans, users
from deni.services.mpesa import payments

DEPLOY = Path(__file__).resolve().parents[1]
PGBACKREST_CONF = DEPLOY / "pgbackrest" / "pgbackrest.conf"
POSTGRESQL_CONF = DEPLOY / "pgbackrest" / "postgresql.conf"
STANZA = "deni"
DATABASE = "deni"
SUPERUSER = "postgres"
PIN = "4827"
# The drill's archive_timeout: short, so that measuring the RPO takes seconds. Production's is
# in deploy/pgbackrest/postgresql.conf (60 s).
ARCHIVE_TIMEOUT_S = 5
COMMAND_TIMEOUT_S = 180


STARTED = time.monotonic()


class DrillFailed(Exception):
    pass


def say(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:6.1f} s] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def postgres_bin(given: str | None) -> Path:
    if given:
        return Path(given)
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name)
    )
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise DrillFailed("no PostgreSQL server binaries (initdb): install postgresql")
    return Path(initdb).parent


@dataclass
class Cluster:
    """A throwaway PostgreSQL cluster and its pgBackRest repository, in one folder."""

    root: Path
    port: int
    bin: Path
    os_user: str | None  # run the PostgreSQL side as this user (when we are root)
    passphrase: str = field(default_factory=lambda: secrets.token_urlsafe(36), repr=False)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{DATABASE}"

    def folder(self, name: str) -> Path:
        return self.root / name

    def owned(self, path: Path) -> None:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.os_user is not None:
            entry = pwd.getpwnam(self.os_user)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def env(self, passphrase: str | None = None) -> dict[str, str]:
        """What every pgbackrest process needs, the server's archive_command included: the
        drill's configuration, no other (an empty include folder), and the passphrase."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PGBACKREST_", "PG"))}
        env |= {
            "PGBACKREST_CONFIG": str(self.root / "pgbackrest.conf"),
            "PGBACKREST_CONFIG_INCLUDE_PATH": str(self.root / "conf.d"),
            "PGBACKREST_REPO1_CIPHER_PASS": self.passphrase if passphrase is None else passphrase,
            "LC_ALL": "C",
        }
        return env

    def run(
        self, *command: str, passphrase: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """A command of the PostgreSQL side, as its OS user."""
        extra: dict[str, Any] = {}
        if self.os_user is not None:
            extra = {"user": self.os_user, "group": self.os_user, "extra_groups": []}
        done = subprocess.run(  # noqa: S603 (the drill's own commands, no shell)
            command,
            env=self.env(passphrase),
            cwd=self.root,
            capture_output=True,
            text=True,
            errors="replace",  # pgbackrest given the wrong passphrase prints what it decrypted
            timeout=COMMAND_TIMEOUT_S,
            check=False,
            **extra,
        )
        if check and done.returncode != 0:
            raise DrillFailed(
                f"{' '.join(command)} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
            )
        return done

    def pg(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run(str(self.bin / tool), *args)

    def pgbackrest(self, *args: str, passphrase: str | None = None, check: bool = True) -> str:
        return self.run(
            "pgbackrest", f"--stanza={STANZA}", *args, passphrase=passphrase, check=check
        ).stdout

    def init(self, archive_timeout_s: int) -> None:
        self.owned(self.root)
        for name in ("repo", "log", "run", "spool", "lock", "conf.d"):
            self.owned(self.folder(name))
        self.pg("initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
                "--locale=C", "--no-sync")  # fmt: skip
        shipped = POSTGRESQL_CONF.read_text()
        drill = "\n".join(
            [
                "",
                "# The restore drill's own: loopback only, its port and socket, a short",
                "# archive_timeout so the RPO is measured in seconds.",
                "listen_addresses = '127.0.0.1'",
                f"port = {self.port}",
                f"unix_socket_directories = '{self.folder('run')}'",
                f"archive_timeout = {archive_timeout_s}s",
                "",
            ]
        )
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write("\n# deploy/pgbackrest/postgresql.conf\n" + shipped + drill)
        self.write_pgbackrest_conf()

    def write_pgbackrest_conf(self) -> None:
        """The shipped template, its paths pointed into the drill's folder."""
        conf = configparser.ConfigParser(interpolation=None, comment_prefixes=("#",))
        conf.optionxform = str  # type: ignore[assignment,method-assign]
        conf.read(PGBACKREST_CONF)
        overrides = {
            "global": {
                "repo1-path": self.folder("repo"),
                "spool-path": self.folder("spool"),
                "log-path": self.folder("log"),
                "lock-path": self.folder("lock"),
                "log-level-console": "warn",
            },
            STANZA: {
                "pg1-path": self.data,
                "pg1-port": self.port,
                "pg1-socket-path": self.folder("run"),
                "pg1-user": SUPERUSER,
            },
        }
        for section, values in overrides.items():
            for key, value in values.items():
                assert conf.has_option(section, key) or key == "pg1-user", (section, key)
                conf.set(section, key, str(value))
        assert conf.get("global", "repo1-cipher-type") == "aes-256-cbc"
        assert not conf.has_option("global", "repo1-cipher-pass"), "a passphrase in git"
        path = self.root / "pgbackrest.conf"
        with path.open("w") as file:
            conf.write(file, space_around_delimiters=False)
        if self.os_user is not None:
            entry = pwd.getpwnam(self.os_user)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def start(self) -> None:
        self.pg("pg_ctl", "-D", str(self.data), "-l", str(self.folder("log") / "postgresql.log"),
                "-w", "-t", "120", "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self.pg("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def server_log(self) -> str:
        path = self.folder("log") / "postgresql.log"
        return path.read_text(errors="replace") if path.exists() else ""


# --- Deni's side: the books ---------------------------------------------------------------


@dataclass
class Written:
    """What one phase wrote, to look for after the restore."""

    user_ids: list[str] = field(default_factory=list)
    loan_ids: list[str] = field(default_factory=list)
    receipts: list[str] = field(default_factory=list)


def deni_cli(cluster: Cluster, *args: str) -> str:
    """The `deni` command, against the drill's database, as the operator would type it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DENI_")}
    env |= {"DENI_DATABASE_URL": cluster.url, "DENI_ENVIRONMENT": "development", "COLUMNS": "200"}
    done = subprocess.run(  # noqa: S603 (our own interpreter and command)
        [sys.executable, "-m", "deni.entrypoints.cli", *args],
        env=env,
        cwd=cluster.root,  # no developer's .env is read
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        raise DrillFailed(f"deni {' '.join(args)} exited {done.returncode}\n{done.stdout}")
    return done.stdout


def write_books(deni: Deni, *, phase: int, loans_count: int) -> Written:
    """Lenders paid in by M-PESA, borrowers asking them for loans, every loan approved; of
    every four, two repaid in full, one in part, one left outstanding."""
    written = Written()
    for n in range(loans_count):
        lender, borrower = (
            users.register_user(
                deni,
                phone=f"070{phase}{2 * n + side:06d}",
                name=f"{role} {phase}-{n}",
                pin=PIN,
                phone_proven=True,
                channel="ussd",
            )
            for side, role in ((0, "Lender"), (1, "Borrower"))
        )
        written.user_ids += [lender.id, borrower.id]
        principal_cents, fee_cents = 100_000 + 5_000 * n, 5_000 + 100 * n
        for who, cents in ((lender, principal_cents), (borrower, fee_cents)):
            receipt = f"D{phase}{uuid.uuid4().hex[:8].upper()}"
            payments.record_mpesa_payment(deni, user_id=who.id, amount_cents=cents, receipt=receipt)
            written.receipts.append(receipt)
        loan = loans.request_loan(
            deni,
            borrower_id=borrower.id,
            lender_phone=lender.phone,
            principal_cents=principal_cents,
            fee_cents=fee_cents,
            term_days=14 + n % 14,
            channel="ussd",
        )
        loans.approve_loan(deni, lender_id=lender.id, loan_id=loan.id, pin=PIN, channel="ussd")
        written.loan_ids.append(loan.id)
        owed_cents = principal_cents + fee_cents
        repaid_cents = {0: owed_cents, 1: owed_cents, 2: owed_cents // 3}.get(n % 4, 0)
        if repaid_cents:
            loans.repay_loan(
                deni,
                borrower_id=borrower.id,
                loan_id=loan.id,
                amount_cents=repaid_cents,
                pin=PIN,
                idempotency_key=str(uuid.uuid4()),
                channel="ussd",
            )
    return written


def snapshot(engine: Engine) -> dict[str, tuple[int, str]]:
    """Every table of Deni's: its rows, and a SHA-256 of them in primary-key order."""
    digests: dict[str, tuple[int, str]] = {}
    with engine.connect() as connection:
        for table in tables.metadata.sorted_tables:
            order = list(table.primary_key.columns) or list(table.columns)
            digest, count = hashlib.sha256(), 0
            for row in connection.execute(select(table).order_by(*order)):
                digest.update(repr(tuple(row)).encode())
                count += 1
            digests[table.name] = (count, digest.hexdigest())
    return digests


def scalar(engine: Engine, sql: str, **params: Any) -> Any:
    with engine.connect() as connection:
        return connection.execute(text(sql), params).scalar_one()


def present(engine: Engine, written: Written) -> dict[str, int]:
    """How many of the members and loans a phase wrote the database holds."""
    with engine.connect() as connection:
        found_users = connection.execute(
            select(tables.users.c.id).where(tables.users.c.id.in_(written.user_ids))
        ).fetchall()
        found_loans = connection.execute(
            select(tables.loans.c.id).where(tables.loans.c.id.in_(written.loan_ids))
        ).fetchall()
    return {"users": len(found_users), "loans": len(found_loans)}


# --- The drill ------------------------------------------------------------------------------


def add_ballast(cluster: Cluster, megabytes: int) -> None:
    """A database of `megabytes` of rows beside Deni's, so that the backup and the restore
    move something of a real server's size (--ballast-mb): what the RTO grows with."""
    admin = create_engine(cluster.url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text("CREATE DATABASE ballast"))
    admin.dispose()
    engine = create_engine(cluster.url.rsplit("/", 1)[0] + "/ballast")
    rows = megabytes * 1024 * 1024 // 120  # about 120 bytes a row, with its header
    with engine.begin() as connection:
        connection.execute(
            text(
                "CREATE TABLE ballast AS SELECT g AS id, md5(random()::text) AS a, "
                "md5(random()::text) AS b, now() AS at FROM generate_series(1, :rows) AS g"
            ),
            {"rows": rows},
        )
    engine.dispose()


def wait_archived(engine: Engine, wal: str, *, within_s: float) -> None:
    """Until PostgreSQL's archiver has handed `wal` to pgBackRest, and pgBackRest (asynchronous
    archiving acknowledges only what reached the repository) has stored it."""
    deadline = time.monotonic() + within_s
    sql = "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver"
    while scalar(engine, sql) < wal:
        if time.monotonic() > deadline:
            raise DrillFailed(f"WAL segment {wal} was not archived within {within_s} s")
        time.sleep(0.05)


def unreadable(cluster: Cluster) -> bool:
    """Every file of the repository, backups and WAL alike, is OpenSSL-encrypted (begins
    `Salted__`; an unencrypted info file begins `[backrest]`, a WAL segment with zstd's magic),
    and another passphrase cannot read them: the stanza's status is an error (what the wrong
    key decrypts to varies: a format or a cipher error, with the garbage quoted)."""
    files = [path for path in cluster.folder("repo").rglob("*") if path.is_file()]
    sealed = bool(files) and all(_begins(path, b"Salted__") for path in files)
    wrong = cluster.pgbackrest("info", "--output=json", passphrase="not it", check=False)  # noqa: S106
    try:
        status = json.loads(wrong, strict=False)[0]["status"]
    except (ValueError, LookupError, TypeError):
        return sealed  # pgbackrest failed outright: unreadable as well
    return sealed and status["code"] != 0


def _begins(path: Path, magic: bytes) -> bool:
    with path.open("rb") as file:
        return file.read(len(magic)) == magic


def repo_bytes(cluster: Cluster) -> int:
    return sum(p.stat().st_size for p in cluster.folder("repo").rglob("*") if p.is_file())


def machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


@contextmanager
def cluster_of_its_own(args: argparse.Namespace) -> Iterator[Cluster]:
    os_user = args.os_user if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="deni-drill-", dir=args.workdir))
    cluster = Cluster(root=root, port=args.port, bin=postgres_bin(args.pg_bin), os_user=os_user)
    try:
        yield cluster
    except BaseException:
        print("--- postgresql.log (the end) ---", file=sys.stderr)
        print(cluster.server_log()[-4000:], file=sys.stderr)
        raise
    finally:
        if (cluster.data / "postmaster.pid").exists():
            cluster.run(str(cluster.bin / "pg_ctl"), "-D", str(cluster.data), "-m", "immediate",
                        "-w", "stop", check=False)  # fmt: skip
        if args.keep:
            say(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def drill(args: argparse.Namespace) -> dict[str, Any]:
    if shutil.which("pgbackrest") is None:
        raise DrillFailed("pgbackrest is not installed: `make pgbackrest` (apt-get install)")
    report: dict[str, Any] = {
        "machine": machine(),
        "archive_timeout_s": args.archive_timeout,
        "loans_per_phase": args.loans,
        "ballast_mb": args.ballast_mb,
    }
    with cluster_of_its_own(args) as cluster:
        report["pgbackrest"] = cluster.run("pgbackrest", "version").stdout.strip()
        report["postgresql"] = cluster.pg("postgres", "--version").stdout.strip()
        say(f"{report['postgresql']}, {report['pgbackrest']}; cluster in {cluster.root}, "
            f"port {cluster.port}, run as {cluster.os_user or 'the caller'}")  # fmt: skip
        cluster.init(args.archive_timeout)
        cluster.start()
        cluster.pgbackrest("stanza-create")
        cluster.pgbackrest("check")  # archive_command pushes to the encrypted repository
        admin = create_engine(
            cluster.url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT"
        )
        with admin.connect() as connection:
            connection.execute(text(f"CREATE DATABASE {DATABASE}"))
        admin.dispose()
        deni_cli(cluster, "db", "upgrade")
        say("cluster up, archiving to the encrypted repository; Deni's schema migrated")

        settings = Settings(
            _env_file=None,
            environment="development",
            database_url=cluster.url,
            sweep_interval_s=0,
            sms_interval_s=0,
        )
        deni = bootstrap(settings)
        engine = create_engine(cluster.url)
        try:
            if args.ballast_mb:
                add_ballast(cluster, args.ballast_mb)
                say(f"{args.ballast_mb} MB of ballast in a database of its own")
            write_books(deni, phase=1, loans_count=args.loans)
            entries_at_backup = scalar(engine, "SELECT count(*) FROM journal_entries")
            say(f"books written: {entries_at_backup} journal entries; full backup...")

            started = time.monotonic()
            cluster.pgbackrest("--type=full", "backup")
            report["backup"] = {
                "type": "full",
                "seconds": round(time.monotonic() - started, 2),
                "database_bytes": scalar(engine, "SELECT pg_database_size(current_database())"),
                "cluster_bytes": int(
                    scalar(engine, "SELECT sum(pg_database_size(oid)) FROM pg_database")
                ),
                "repository_bytes": repo_bytes(cluster),
            }
            info = json.loads(cluster.pgbackrest("info", "--output=json"))
            report["backup"]["cipher"] = info[0]["cipher"]
            # The backup alone, as stored (compressed, encrypted), and the cluster it copied.
            newest = info[0]["backup"][-1]["info"]
            report["backup"]["stored_bytes"] = newest["repository"]["size"]
            report["backup"]["copied_bytes"] = newest["size"]
            say(f"full backup in {report['backup']['seconds']} s; more books...")

            write_books(deni, phase=2, loans_count=args.loans)
            phone = "0704999999"
            deni_cli(cluster, "user", "create", "--phone", phone, "--name", "Amina", "--pin", PIN)
            deni_cli(cluster, "wallet", "deposit", "--phone", phone, "--amount", "1500",
                     "--receipt", "QKDRILL001")  # fmt: skip

            # The moment: nothing writes between the snapshot and the restore point.
            day = nairobi_today(deni.clock.now()).isoformat()
            moment = snapshot(engine)
            trial_balance = deni_cli(cluster, "report", "trial-balance", "--day", day)
            point = f"deni-drill-{datetime.now().strftime('%Y%m%dT%H%M%S')}"
            point_lsn = scalar(engine, "SELECT pg_create_restore_point(:p)::text", p=point)
            entries_at_moment = moment["journal_entries"][0]
            say(f"the moment: {entries_at_moment} entries; restore point {point} at {point_lsn}")

            after = write_books(deni, phase=3, loans_count=args.loans)
            assert present(engine, after) == {"users": 2 * args.loans, "loans": args.loans}

            # The RPO: a commit made just after a WAL switch waits the longest to reach the
            # repository: until archive_timeout forces the next switch, and its push.
            switched = scalar(engine, "SELECT pg_walfile_name(pg_switch_wal())")
            wait_archived(engine, switched, within_s=60)
            payments.record_mpesa_payment(
                deni, user_id=after.user_ids[0], amount_cents=100, receipt="QKDRILLRPO"
            )
            started = time.monotonic()
            last_wal = scalar(engine, "SELECT pg_walfile_name(pg_current_wal_lsn())")
            wait_archived(engine, last_wal, within_s=args.archive_timeout + 60)
            report["rpo"] = {
                "archive_lag_s": round(time.monotonic() - started, 2),
                "archive_timeout_s": args.archive_timeout,
            }
            lag_s = report["rpo"]["archive_lag_s"]
            entries_after = scalar(engine, "SELECT count(*) FROM journal_entries")
            say(f"{entries_after - entries_at_moment} entries after the moment; a commit made just "
                f"after a WAL switch reached the repository {lag_s} s later")  # fmt: skip
        finally:
            deni.close()
            engine.dispose()

        # The disaster: the server dies and its disk is lost.
        cluster.stop(mode="immediate")
        shutil.rmtree(cluster.data)
        say("server stopped (immediate) and its data folder deleted; restoring...")

        started = time.monotonic()
        cluster.owned(cluster.data)
        cluster.pgbackrest("--type=name", f"--target={point}", "--target-action=promote",
                           "restore")  # fmt: skip
        restored_s = time.monotonic() - started
        cluster.start()
        engine = create_engine(cluster.url)
        try:
            while scalar(engine, "SELECT pg_is_in_recovery()"):
                if time.monotonic() - started > COMMAND_TIMEOUT_S:
                    raise DrillFailed("the restored server never left recovery")
                time.sleep(0.05)
            total_s = time.monotonic() - started
            report["rto"] = {
                "restore_s": round(restored_s, 2),
                "start_and_recover_s": round(total_s - restored_s, 2),
                "total_s": round(total_s, 2),
            }
            say(f"restored in {restored_s:.2f} s, serving {total_s:.2f} s after the restore began")

            checks: dict[str, bool] = {}
            again = snapshot(engine)
            differ = sorted(name for name in moment if moment[name] != again.get(name))
            checks["every table equals the moment"] = not differ
            checks["trial balance equals the moment"] = (
                deni_cli(cluster, "report", "trial-balance", "--day", day) == trial_balance
            )
            deni_cli(cluster, "ledger", "check")  # exits 1 on any failed invariant
            checks["deni ledger check passes"] = True
            deni_cli(cluster, "audit", "verify")
            checks["deni audit verify passes"] = True
            checks["nothing after the moment"] = (
                present(engine, after)
                == {
                    "users": 0,
                    "loans": 0,
                }
                and again["journal_entries"][0] == entries_at_moment
            )
            log = cluster.server_log()
            checks["recovery stopped at the restore point"] = (
                f'recovery stopping at restore point "{point}"' in log
            )
            checks["every repository file is encrypted; no other passphrase opens it"] = unreadable(
                cluster
            )
            checks["the repository is encrypted (aes-256-cbc)"] = (
                report["backup"]["cipher"] == "aes-256-cbc"
            )
            deni_cli(cluster, "wallet", "deposit", "--phone", phone, "--amount", "100",
                     "--receipt", "QKDRILL002")  # fmt: skip
            checks["Deni writes again after the restore"] = True
        finally:
            engine.dispose()
        report["ledger"] = {
            "entries_at_backup": entries_at_backup,
            "entries_at_moment": entries_at_moment,
            "entries_at_disaster": entries_after,
            "entries_restored": again["journal_entries"][0],
            "rows_at_moment": sum(count for count, _ in moment.values()),
            "tables_differing": differ,
        }
        report["restore_point"] = {"name": point, "lsn": point_lsn}
        report["checks"] = checks
    report["drill_s"] = round(time.monotonic() - STARTED, 1)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("DENI_BACKUP_DRILL_PORT") or 0) or None,
        help="The drill cluster's port (default: DENI_BACKUP_DRILL_PORT, else a free one).",
    )
    parser.add_argument("--loans", type=int, default=40, help="Loans per phase (three phases).")
    parser.add_argument("--archive-timeout", type=int, default=ARCHIVE_TIMEOUT_S)
    parser.add_argument(
        "--ballast-mb",
        type=int,
        default=0,
        help="Add a database of this many MB beside Deni's, to time a restore of that size.",
    )
    parser.add_argument("--pg-bin", help="PostgreSQL's bin folder (default: the newest found).")
    parser.add_argument("--os-user", default="postgres", help="Who runs PostgreSQL, as root.")
    parser.add_argument("--workdir", help="Where to make the temporary folder.")
    parser.add_argument("--json", type=Path, help="Write the report here too.")
    parser.add_argument("--keep", action="store_true", help="Keep the cluster's folder.")
    args = parser.parse_args(argv)
    args.port = args.port or free_port()
    try:
        report = drill(args)
    except DrillFailed as failed:
        print(f"DRILL FAILED: {failed}", file=sys.stderr)
        return 1
    for name, ok in report["checks"].items():
        print(f"  {'ok  ' if ok else 'FAIL'} {name}")
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if all(report["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
