"""``central-api``: run, migrate and administer the central registry."""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import sys
from pathlib import Path

from central_api.config import ConfigError, Settings
from central_api.db import DatabaseNotMigrated


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


def _migrate(args: argparse.Namespace) -> int:
    from central_api.db import migrate

    settings = _settings(args)
    migrate(settings.database_url)
    print("database is at the latest revision")
    return 0


def _keygen(_: argparse.Namespace) -> int:
    print(base64.b64encode(os.urandom(32)).decode())
    return 0


def _packet_keygen(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    key = X25519PrivateKey.generate()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.touch(mode=0o600)
    out.write_text(base64.b64encode(key.private_bytes_raw()).decode() + "\n")
    print(base64.b64encode(key.public_key().public_bytes_raw()).decode())
    return 0


def _kiosk_add(args: argparse.Namespace) -> int:
    from central_api.db import ensure_migrated, make_engine, make_session_factory, transaction
    from central_api.enrolment.service import register_kiosk

    settings = _settings(args)
    engine = make_engine(settings.database_url)
    ensure_migrated(engine)
    raw = args.public_key or open(args.public_key_file).read().strip()  # noqa: SIM115
    with transaction(make_session_factory(engine)) as s:
        register_kiosk(s, args.kiosk_id, base64.b64decode(raw, validate=True), actor="cli")
    engine.dispose()
    print(f"kiosk {args.kiosk_id} registered")
    return 0


def _delete_person(args: argparse.Namespace) -> int:
    from central_api.db import ensure_migrated, make_engine, make_session_factory, transaction
    from central_api.identity.service import delete_person

    settings = _settings(args)
    engine = make_engine(settings.database_url)
    ensure_migrated(engine)
    with transaction(make_session_factory(engine)) as s:
        pid = delete_person(s, args.idcs, actor="cli")
    engine.dispose()
    if pid is None:
        print("no such person", file=sys.stderr)
        return 1
    print("person deleted; the IDCS stays reserved and will never be issued again")
    return 0


def _stats(args: argparse.Namespace) -> int:
    from sqlalchemy import func, select

    from central_api.db import ensure_migrated, make_engine, make_session_factory
    from central_api.enrolment.models import Enrolment

    settings = _settings(args)
    engine = make_engine(settings.database_url)
    ensure_migrated(engine)
    with make_session_factory(engine)() as s:
        rows = s.execute(select(Enrolment.status, func.count()).group_by(Enrolment.status))
        print(json.dumps({str(k): v for k, v in rows}, sort_keys=True))
    engine.dispose()
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

    sp = sub.add_parser("kiosk-add", help="register a kiosk and its Ed25519 public key")
    db_arg(sp)
    sp.add_argument("kiosk_id")
    g = sp.add_mutually_exclusive_group(required=True)
    g.add_argument("--public-key", help="base64 raw 32-byte Ed25519 public key")
    g.add_argument("--public-key-file", help="file holding that base64 key")
    sp.set_defaults(func=_kiosk_add)

    sp = sub.add_parser("delete-person", help="remove a person (the IDCS is never reused)")
    db_arg(sp)
    sp.add_argument("idcs")
    sp.set_defaults(func=_delete_person)

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
    except (ConfigError, DatabaseNotMigrated) as exc:
        print(f"central-api: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
