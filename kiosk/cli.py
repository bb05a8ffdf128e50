"""``kiosk``: the enrolment kiosk's command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _demo(args: argparse.Namespace) -> int:
    from kiosk.demo import main as demo

    return demo(Path(args.workdir), ui=args.ui)


def _keygen(args: argparse.Namespace) -> int:
    from kiosk.client import KioskIdentity

    ident = KioskIdentity.generate(args.kiosk_id)
    ident.save(Path(args.out))
    print(ident.public_key_b64())
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = argparse.ArgumentParser(prog="kiosk", description="Biometric enrolment kiosk.")
    sub = p.add_subparsers(dest="command", required=True)
    sp = sub.add_parser(
        "demo",
        help="run a central registry (SQLite) and enrol the shared test faces through it",
    )
    sp.add_argument("--workdir", default="var/demo", help="where the demo keeps its files")
    sp.add_argument(
        "--ui", action="store_true", help="then leave the kiosk UI open on http://127.0.0.1:8080"
    )
    sp.set_defaults(func=_demo)
    sp = sub.add_parser(
        "keygen",
        help="create this kiosk's signing key; prints the public key to register centrally",
    )
    sp.add_argument("kiosk_id")
    sp.add_argument("--out", required=True, help="file for the PEM private key (mode 600)")
    sp.set_defaults(func=_keygen)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``kiosk``."""
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
