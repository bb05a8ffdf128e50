"""``central-api``: run, migrate and administer the central registry."""

from __future__ import annotations

import argparse
import base64
import csv
import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session, sessionmaker

if TYPE_CHECKING:
    from central_api.operators.service import NewCredentials

from central_api.config import ConfigError, Settings
from central_api.db import DatabaseNotMigrated, transaction
from central_api.exceptions import RegistryError


def _settings(args: argparse.Namespace) -> Settings:
    if getattr(args, "database_url", None):
        os.environ["CENTRAL_DATABASE_URL"] = args.database_url
    return Settings()


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from central_api.main import create_app

    app = create_app(_settings(args))
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def _abis_worker(args: argparse.Namespace) -> int:
    """Work the ABIS job queue (and bridge the broker) until SIGTERM / SIGINT."""
    import signal
    import threading

    from central_api.abis.broker import BrokerBridge
    from central_api.abis.service import AbisWorker, make_engine_for, partner_key
    from central_api.crypto import FieldCipher
    from central_api.db import ensure_migrated, make_engine, make_session_factory

    settings = _settings(args)
    key = settings.key_bytes()
    engine = make_engine(settings.database_url)
    ensure_migrated(engine)
    sessions = make_session_factory(engine, key)
    cipher = FieldCipher(key)
    worker = AbisWorker(sessions, cipher, settings, None, partner_key(settings))
    worker.engine = make_engine_for(settings, sessions, cipher)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    threads = [threading.Thread(target=worker.run, args=(stop,), name="abis-worker")]
    if args.broker:
        bridge = BrokerBridge(sessions, settings, worker.wake)
        worker.on_done = lambda _: bridge.send_now.set()
        threads.append(threading.Thread(target=bridge.run, args=(stop,), name="abis-broker"))
    for t in threads:
        t.start()
    print(f"abis-worker ready (engine {settings.abis_engine}, {settings.abis_shards} shards)")
    sys.stdout.flush()
    while not stop.wait(0.5):
        pass
    worker.wake()
    for t in threads:
        t.join(timeout=30)
    worker.engine.close()
    engine.dispose()
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from central_api.db import migrate

    settings = _settings(args)
    migrate(settings.database_url)
    print("database is at the latest revision")
    return 0


def _keygen(_: argparse.Namespace) -> int:
    print(base64.b64encode(os.urandom(32)).decode())
    return 0


def write_private(path: Path, text: str) -> None:
    """Write a secret to ``path`` readable by its owner only, whatever was there before: a new
    file created 0600 beside it, then renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _packet_keygen(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    key = X25519PrivateKey.generate()
    write_private(Path(args.out), base64.b64encode(key.private_bytes_raw()).decode() + "\n")
    print(base64.b64encode(key.public_key().public_bytes_raw()).decode())
    return 0


def _signing_keygen(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    write_private(Path(args.out), base64.b64encode(key.private_bytes_raw()).decode() + "\n")
    print(base64.b64encode(key.public_key().public_bytes_raw()).decode())
    return 0


def _firmware_sign(args: argparse.Namespace) -> int:
    """Sign a kiosk device's firmware configuration with the registry's signing key: the
    base64 Ed25519 signature of the file's exact bytes goes to FILE.sig, which a kiosk's
    device daemon verifies (``devices firmware set FILE``) against the registry's public key
    in its trust folder (``firmware-signers/registry.pem``, written by ``--public-pem``)."""
    from cryptography.hazmat.primitives import serialization

    try:
        key = _settings(args).signing_private_key()
        data = Path(args.file).read_bytes()
    except (ConfigError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sig = Path(f"{args.file}.sig")
    sig.write_text(base64.b64encode(key.sign(data)).decode() + "\n", encoding="ascii")
    print(f"signed {args.file}: {sig}")
    if args.public_pem:
        pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        Path(args.public_pem).write_bytes(pem)
        print(f"the registry's public key (for kiosks' firmware-signers/): {args.public_pem}")
    return 0


@contextmanager
def _database(args: argparse.Namespace) -> Iterator[sessionmaker[Session]]:
    """A session factory on the migrated registry database (audited like the server's)."""
    from central_api.db import ensure_migrated, make_engine, make_session_factory

    settings = _settings(args)
    engine = make_engine(settings.database_url)
    try:
        ensure_migrated(engine)
        yield make_session_factory(engine, settings.key_bytes())
    finally:
        engine.dispose()


def _public_key(args: argparse.Namespace) -> bytes:
    raw = args.public_key or Path(args.public_key_file).read_text().strip()
    return base64.b64decode(raw, validate=True)


def _kiosk_add(args: argparse.Namespace) -> int:
    from central_api.enrolment.service import register_kiosk

    with _database(args) as factory, transaction(factory) as s:
        register_kiosk(s, args.kiosk_id, _public_key(args), actor=f"cli:{_operator()}")
    print(f"kiosk {args.kiosk_id} registered")
    return 0


def _kiosk_rotate(args: argparse.Namespace) -> int:
    from central_api.enrolment.service import rotate_kiosk

    with _database(args) as factory, transaction(factory) as s:
        rotate_kiosk(s, args.kiosk_id, _public_key(args), actor=f"cli:{_operator()}")
    print(f"kiosk {args.kiosk_id} now signs with the new key; the old key is refused")
    return 0


def _kiosk_deactivate(args: argparse.Namespace) -> int:
    from central_api.enrolment.service import deactivate_kiosk

    with _database(args) as factory, transaction(factory) as s:
        deactivate_kiosk(s, args.kiosk_id, actor=f"cli:{_operator()}", reason=args.reason)
    print(f"kiosk {args.kiosk_id} deactivated: its new packets get 403")
    return 0


def _kiosk_list(args: argparse.Namespace) -> int:
    import hashlib

    from central_api.enrolment.service import list_kiosks

    with _database(args) as factory, factory() as s:
        rows = [
            {
                "kiosk_id": k.id,
                "active": k.active,
                "registered_at": k.registered_at.isoformat(),
                "key_fingerprint": hashlib.sha256(k.public_key).hexdigest()[:16],
            }
            for k in list_kiosks(s)
        ]
    print(json.dumps(rows, indent=1))
    return 0


def _print_credentials(creds: NewCredentials, json_out: bool) -> None:
    if json_out:
        print(
            json.dumps(
                {
                    "operator": creds.operator_id,
                    "password": creds.password,
                    "totp_secret": creds.totp_base32,
                    "otpauth_uri": creds.uri,
                }
            )
        )
        return
    print(f"operator {creds.operator_id}: hand these over in person, they are not shown again")
    print(f"  temporary password: {creds.password}   (changed at first sign-in)")
    print(f"  authenticator secret (TOTP, SHA-1, 6 digits, 30 s): {creds.totp_base32}")
    print(f"  {creds.uri}")
    print(f"  codes without a phone: central-api totp-code {creds.totp_base32}")


def _operator_add(args: argparse.Namespace) -> int:
    from central_api.crypto import FieldCipher
    from central_api.operators.service import add_operator

    password = Path(args.password_file).read_text().strip() if args.password_file else None
    with _database(args) as factory, transaction(factory) as s:
        cipher = FieldCipher(_settings(args).key_bytes())
        creds = add_operator(
            s, cipher, args.operator_id, args.role, f"cli:{_operator()}", password=password
        )
    _print_credentials(creds, args.json)
    return 0


def _operator_disable(args: argparse.Namespace) -> int:
    from central_api.operators.service import disable_operator

    with _database(args) as factory, transaction(factory) as s:
        disable_operator(s, args.operator_id, f"cli:{_operator()}", args.reason)
    print(f"operator {args.operator_id} disabled; their sessions are ended")
    return 0


def _operator_reset(args: argparse.Namespace) -> int:
    from central_api.crypto import FieldCipher
    from central_api.operators.service import reset_operator

    with _database(args) as factory, transaction(factory) as s:
        cipher = FieldCipher(_settings(args).key_bytes())
        creds = reset_operator(s, cipher, args.operator_id, f"cli:{_operator()}")
    _print_credentials(creds, args.json)
    return 0


def _kiosk_operator_set(args: argparse.Namespace) -> int:
    from central_api.enrolment.service import set_kiosk_operator

    with _database(args) as factory, transaction(factory) as s:
        row, pin = set_kiosk_operator(
            s, args.operator_id, args.role, args.kiosks, f"cli:{_operator()}"
        )
        version = row.version
    print(
        f"kiosk {args.role} {args.operator_id}: PIN {pin} (shown once); kiosks "
        f"{args.kiosks}; in list version {version}, installed at each kiosk's next sync"
    )
    return 0


def _kiosk_operator_disable(args: argparse.Namespace) -> int:
    from central_api.enrolment.service import disable_kiosk_operator

    with _database(args) as factory, transaction(factory) as s:
        disable_kiosk_operator(s, args.operator_id, f"cli:{_operator()}", args.reason)
    print(f"kiosk operator {args.operator_id} disabled: removed at each kiosk's next sync")
    return 0


def _operator_link(args: argparse.Namespace) -> int:
    from central_api.operators.service import link_oidc

    with _database(args) as factory, transaction(factory) as s:
        link_oidc(s, args.operator_id, args.subject, f"cli:{_operator()}")
    print(
        f"operator {args.operator_id}: "
        + (f"signs in at the identity provider as {args.subject}" if args.subject else "unlinked")
    )
    return 0


def _totp_code(args: argparse.Namespace) -> int:
    from central_api.operators.service import secret_from_base32, totp

    try:
        secret = secret_from_base32(args.secret)
    except ValueError:
        print("central-api: not a base32 secret", file=sys.stderr)
        return 2
    print(totp(secret))
    return 0


def _operator() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def _delete_person(args: argparse.Namespace) -> int:
    from central_api.identity.service import delete_person

    with _database(args) as factory, transaction(factory) as s:
        pid = delete_person(s, args.idcs, actor=f"cli:{_operator()}")
    if pid is None:
        print("no such person", file=sys.stderr)
        return 1
    print("person deleted; the IDCS stays reserved and will never be issued again")
    return 0


def _stats(args: argparse.Namespace) -> int:
    from sqlalchemy import func, select

    from central_api.enrolment.models import Enrolment

    with _database(args) as factory, factory() as s:
        rows = s.execute(select(Enrolment.status, func.count()).group_by(Enrolment.status))
        print(json.dumps({str(k): v for k, v in rows}, sort_keys=True))
    return 0


def _backfill_fingers(args: argparse.Namespace) -> int:
    from central_api.crypto import FieldCipher
    from central_api.dedup.service import backfill_finger_references

    cipher = FieldCipher(_settings(args).key_bytes())
    done = 0
    with _database(args) as factory:
        for done in backfill_finger_references(factory, cipher, args.batch):
            print(f"{done} persons done", file=sys.stderr, flush=True)
    print(f"finger references backfilled: {done} persons")
    return 0


def _retemplate(args: argparse.Namespace) -> int:
    from central_api.crypto import FieldCipher
    from central_api.dedup.service import RetemplateProgress, retemplate

    cipher = FieldCipher(_settings(args).key_bytes())
    done = RetemplateProgress()
    with _database(args) as factory:
        for done in retemplate(factory, cipher, args.batch):
            print(
                f"{done.persons} persons: {done.faces} faces, {done.fingers} fingers remade",
                file=sys.stderr,
                flush=True,
            )
    print(json.dumps(dataclasses.asdict(done)))
    return 0


def _evidence(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from central_api.audit.service import record
    from central_api.enrolment.models import Enrolment

    with _database(args) as factory, transaction(factory) as s:
        rows = s.scalars(
            select(Enrolment).where(Enrolment.receipt_number == args.receipt).order_by(Enrolment.id)
        ).all()
        for e in rows:  # reading a decision's evidence is itself recorded
            record(s, f"cli:{_operator()}", "evidence.read", "enrolment", e.id)
        found = [
            {
                "receipt_number": e.receipt_number,
                "status": e.status,
                "evidence": None if e.evidence is None else json.loads(e.evidence),
            }
            for e in rows
        ]
    if not found:
        print("no enrolment has that receipt number", file=sys.stderr)
        return 1
    print(json.dumps(found, indent=2))
    return 0


def _audit_verify(args: argparse.Namespace) -> int:
    from central_api.audit.service import chain_key, verify

    settings = _settings(args)
    public = settings.signing_private_key().public_key().public_bytes_raw()
    with _database(args) as factory, factory() as s:
        report = verify(s, chain_key(settings.key_bytes()), public)
    print(
        json.dumps(
            {
                "ok": report.ok,
                "rows": report.rows,
                "legacy_rows": report.legacy_rows,
                "last_seq": report.last_seq,
                "checkpoints": report.checkpoints,
                "findings": [
                    {"seq": f.seq, "kind": f.kind, "detail": f.detail} for f in report.findings
                ],
            },
            indent=1,
        )
    )
    return 0 if report.ok else 1


def _audit_checkpoint(args: argparse.Namespace) -> int:
    from central_api.audit.service import checkpoint

    key = _settings(args).signing_private_key()
    with _database(args) as factory, transaction(factory) as s:
        cp = checkpoint(s, key.sign)
        print(f"checkpoint at row {cp.seq}" if cp else "nothing new since the last checkpoint")
    return 0


def _rsu_rescore(args: argparse.Namespace) -> int:
    from collections import Counter

    from sqlalchemy import func, select

    from central_api.crypto import FieldCipher
    from central_api.rsu.models import Household
    from central_api.rsu.schemas import RescoreSummary
    from central_api.rsu.service import changed_by_job, job_summary, run_rescore, start_rescore

    if args.resume is None and args.model is None:
        print(
            "central-api: rsu-rescore needs --model VERSION (or --resume JOB_ID)", file=sys.stderr
        )
        return 2
    cipher = FieldCipher(_settings(args).key_bytes())
    actor = f"cli:{_operator()}"
    with _database(args) as factory:
        if args.resume is None:
            thresholds = None
            source = args.thresholds or _settings(args).rsu_thresholds_file
            if source:
                thresholds = json.loads(Path(source).read_text(encoding="utf-8"))
            with transaction(factory) as s:
                job_id = start_rescore(
                    s,
                    model_source=args.model,
                    actor=actor,
                    reason=args.reason,
                    thresholds=thresholds,
                    batch=args.batch,
                ).id
        else:
            job_id = args.resume
        with factory() as s:
            total = s.scalar(select(func.count()).where(Household.current_version > 0)) or 0
        print(f"re-score job {job_id} (resume with --resume {job_id})", file=sys.stderr)

        with factory() as s:
            before = job_summary(s, job_id).processed  # a resumed job's part already done
        started = time.monotonic()

        def progress(p: RescoreSummary) -> None:
            share = p.processed / total if total else 1.0
            rate = (p.processed - before) / max(time.monotonic() - started, 1e-9)
            eta = (total - p.processed) / rate if rate > 0 else 0.0
            bar = "#" * int(share * 30)
            print(
                f"\rjob {p.id} [{bar:<30}] {share:6.1%} {p.processed}/{total} households, "
                f"{p.changed} changed, {rate:,.0f}/s, ETA {int(eta) // 60}:{int(eta) % 60:02d}",
                end="",
                file=sys.stderr,
                flush=True,
            )

        done = run_rescore(factory, cipher, job_id, actor, progress=progress)
        print(file=sys.stderr)
        with factory() as s:
            changes = changed_by_job(s, job_id)
    by_programme = Counter(
        f"{programme}:{'now_eligible' if eligible else 'no_longer_eligible'}"
        for _, programme, eligible in changes
    )
    if args.changed:  # the households whose eligibility changed, for the programmes' offices
        with open(args.changed, "w", encoding="utf-8", newline="") as f:
            out = csv.writer(f)
            out.writerow(["reference", "programme", "eligible_now"])
            out.writerows((ref, programme, int(eligible)) for ref, programme, eligible in changes)
    print(json.dumps({**done.model_dump(), "changes": dict(sorted(by_programme.items()))}))
    return 0


def _rsu_notify(args: argparse.Namespace) -> int:
    from sqlalchemy import func, select

    from central_api.rsu.models import Notice
    from central_api.rsu.notices import JsonLinesNotifier
    from central_api.rsu.service import deliver_notices

    with _database(args) as factory:
        sent = deliver_notices(
            factory, JsonLinesNotifier(Path(args.to)), f"cli:{_operator()}", limit=args.limit
        )
        with factory() as s:
            left = s.scalar(select(func.count()).where(Notice.delivered_at.is_(None))) or 0
    print(json.dumps({"delivered": sent, "pending": left, "to": args.to}))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = argparse.ArgumentParser(
        prog="central-api",
        description="Central population registry: enrolment intake, 1:N dedup, IDCS issuance. "
        "Settings come from CENTRAL_* environment variables (CENTRAL_DATABASE_URL, "
        "CENTRAL_DATA_KEY(_FILE), CENTRAL_PACKET_KEY(_FILE), ...).",
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    sub = p.add_subparsers(dest="command", required=True)

    def db_arg(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--database-url", help="overrides CENTRAL_DATABASE_URL")

    sp = sub.add_parser("serve", help="run the HTTP API")
    db_arg(sp)
    sp.add_argument("--host", default="127.0.0.1")
    sp.add_argument("--port", type=int, default=8000)
    sp.set_defaults(func=_serve)

    sp = sub.add_parser(
        "abis-worker",
        help="work the MOSIP ABIS job queue (run several; CENTRAL_ABIS_ENGINE=ray shares "
        "the galleries across them)",
    )
    db_arg(sp)
    sp.add_argument(
        "--broker",
        action="store_true",
        help="also bridge ActiveMQ (CENTRAL_ABIS_BROKER) over STOMP: requests in, answers out",
    )
    sp.set_defaults(func=_abis_worker)

    sp = sub.add_parser("migrate", help="create or upgrade the database schema")
    db_arg(sp)
    sp.set_defaults(func=_migrate)

    sp = sub.add_parser("keygen", help="print a new random data-at-rest key (base64)")
    sp.set_defaults(func=_keygen)

    sp = sub.add_parser(
        "packet-keygen",
        help="create the registry's X25519 packet key (file, mode 600); prints the public key "
        "that kiosks seal packets to",
    )
    sp.add_argument("--out", required=True, help="file for the base64 private key")
    sp.set_defaults(func=_packet_keygen)

    sp = sub.add_parser(
        "signing-keygen",
        help="create the registry's Ed25519 signing key (file, mode 600): it signs every "
        "decision and the audit checkpoints; prints the public key that kiosks verify with",
    )
    sp.add_argument("--out", required=True, help="file for the base64 private key")
    sp.set_defaults(func=_signing_keygen)
    sp = sub.add_parser(
        "firmware-sign",
        help="sign a kiosk device's firmware configuration (YAML) with the registry's signing "
        "key: FILE.sig, which kiosks accept outside technician mode",
    )
    sp.add_argument("file")
    sp.add_argument("--public-pem", help="also write the registry's public key (PEM) here")
    sp.set_defaults(func=_firmware_sign)

    for name, func, text in (
        ("kiosk-add", _kiosk_add, "register a kiosk and its Ed25519 public key"),
        ("kiosk-rotate", _kiosk_rotate, "give a kiosk a new key (the old one stops working)"),
    ):
        sp = sub.add_parser(name, help=text)
        db_arg(sp)
        sp.add_argument("kiosk_id")
        g = sp.add_mutually_exclusive_group(required=True)
        g.add_argument("--public-key", help="base64 raw 32-byte Ed25519 public key")
        g.add_argument("--public-key-file", help="file holding that base64 key")
        sp.set_defaults(func=func)

    sp = sub.add_parser("kiosk-deactivate", help="revoke a kiosk: its new packets get 403")
    db_arg(sp)
    sp.add_argument("kiosk_id")
    sp.add_argument("--reason", required=True, help="why (kept in the audit trail)")
    sp.set_defaults(func=_kiosk_deactivate)

    sp = sub.add_parser(
        "operator-add",
        help="create a console account (prints a temporary password and a TOTP secret once)",
    )
    db_arg(sp)
    sp.add_argument("operator_id")
    sp.add_argument(
        "--role",
        required=True,
        choices=["adjudicator", "senior_adjudicator", "registrar_admin", "auditor"],
    )
    sp.add_argument("--password-file", help="set this password (else one is generated)")
    sp.add_argument("--json", action="store_true", help="print the credentials as JSON")
    sp.set_defaults(func=_operator_add)
    sp = sub.add_parser("operator-disable", help="disable a console account, ending its sessions")
    db_arg(sp)
    sp.add_argument("operator_id")
    sp.add_argument("--reason", required=True, help="why (kept in the audit trail)")
    sp.set_defaults(func=_operator_disable)
    sp = sub.add_parser(
        "operator-reset",
        help="new temporary password and TOTP secret for a console account (lost phone)",
    )
    db_arg(sp)
    sp.add_argument("operator_id")
    sp.add_argument("--json", action="store_true", help="print the credentials as JSON")
    sp.set_defaults(func=_operator_reset)
    sp = sub.add_parser(
        "operator-link",
        help="let an identity provider's subject (OpenID Connect 'sub') sign in as an account",
    )
    db_arg(sp)
    sp.add_argument("operator_id")
    sp.add_argument("--subject", help="the provider's subject; omit to unlink")
    sp.set_defaults(func=_operator_link)
    sp = sub.add_parser(
        "kiosk-operator-set",
        help="add a kiosk agent, supervisor or technician, or give one a new PIN (printed once)",
    )
    db_arg(sp)
    sp.add_argument("operator_id")
    sp.add_argument("--role", required=True, choices=["operator", "supervisor", "technician"])
    sp.add_argument("--kiosks", default="*", help="kiosk ids, comma-separated (default: all)")
    sp.set_defaults(func=_kiosk_operator_set)
    sp = sub.add_parser("kiosk-operator-disable", help="take a kiosk agent off every kiosk")
    db_arg(sp)
    sp.add_argument("operator_id")
    sp.add_argument("--reason", required=True, help="why (kept in the audit trail)")
    sp.set_defaults(func=_kiosk_operator_disable)
    sp = sub.add_parser(
        "totp-code", help="the current TOTP code of a base32 secret (as an authenticator app)"
    )
    sp.add_argument("secret")
    sp.set_defaults(func=_totp_code)

    sp = sub.add_parser("kiosk-list", help="list the kiosks (JSON), active or not")
    db_arg(sp)
    sp.set_defaults(func=_kiosk_list)

    ap = sub.add_parser("audit", help="the append-only, tamper-evident audit trail")
    asub = ap.add_subparsers(dest="audit_command", required=True)
    sp = asub.add_parser(
        "verify",
        help="check every row and checkpoint; exit 1 and list what was edited, deleted or inserted",
    )
    db_arg(sp)
    sp.set_defaults(func=_audit_verify)
    sp = asub.add_parser("checkpoint", help="sign the chain's head now")
    db_arg(sp)
    sp.set_defaults(func=_audit_checkpoint)

    sp = sub.add_parser(
        "backfill-fingers",
        help="give persons issued before finger references were kept (migration 0005) their "
        "enrolment's fingers; resumable, prints progress",
    )
    db_arg(sp)
    sp.add_argument("--batch", type=int, default=200, help="persons per transaction")
    sp.set_defaults(func=_backfill_fingers)

    sp = sub.add_parser(
        "retemplate",
        help="make references of the current face and finger algorithms from the enrolments' "
        "images, for every person who lacks them; resumable, prints progress",
    )
    db_arg(sp)
    sp.add_argument("--batch", type=int, default=50, help="persons per transaction")
    sp.set_defaults(func=_retemplate)

    sp = sub.add_parser("delete-person", help="remove a person (the IDCS is never reused)")
    db_arg(sp)
    sp.add_argument("idcs")
    sp.set_defaults(func=_delete_person)

    sp = sub.add_parser(
        "evidence",
        help="print what the dedup decided an enrolment on (JSON: per-finger and face scores, "
        "fused LLR, thresholds, algorithm versions; no biometric data)",
    )
    db_arg(sp)
    sp.add_argument("receipt", help="the receipt number (RNP-XXXXX-XXXXX)")
    sp.set_defaults(func=_evidence)

    sp = sub.add_parser(
        "rsu-rescore",
        help="re-score every declared RSU household under a model and thresholds, in resumable "
        "batches; prints the counts of eligibility changes (JSON, no personal data)",
    )
    db_arg(sp)
    sp.add_argument("--model", help="model version (bundled) or path to a model .json file")
    sp.add_argument(
        "--thresholds",
        help="threshold file (JSON; default: CENTRAL_RSU_THRESHOLDS_FILE, else the bundled one)",
    )
    sp.add_argument("--batch", type=int, default=500, help="households per batch (500)")
    sp.add_argument("--resume", type=int, metavar="JOB_ID", help="resume a stopped job")
    sp.add_argument("--reason", default="new model or thresholds", help="why (kept with the job)")
    sp.add_argument(
        "--changed",
        metavar="CSV",
        help="write the households whose eligibility changed (reference, programme, eligible "
        "now) to this CSV file",
    )
    sp.set_defaults(func=_rsu_rescore)

    sp = sub.add_parser(
        "rsu-notify",
        help="deliver the pending RSU notices (eligibility changed, appeal answered) to a "
        "gateway: here a JSON-lines file, each notice once",
    )
    db_arg(sp)
    sp.add_argument("--to", required=True, help="the JSON-lines file notices are appended to")
    sp.add_argument("--limit", type=int, default=10_000, help="at most this many (10000)")
    sp.set_defaults(func=_rsu_notify)

    sp = sub.add_parser("stats", help="print enrolment counts by status as JSON")
    db_arg(sp)
    sp.set_defaults(func=_stats)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``central-api``."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.func(args))
    except (ConfigError, DatabaseNotMigrated, RegistryError) as exc:
        print(f"central-api: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
