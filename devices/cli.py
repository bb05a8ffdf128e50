"""``devices``: tools for technicians (firmware configurations for now)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from devices.firmware import FirmwareConfigError, load, shipped


def _list(_: argparse.Namespace) -> int:
    for path in shipped():
        cfg = load(path)
        print(f"{cfg.kind:12s} {cfg.vendor} {cfg.model} firmware {cfg.firmware}  ({path.name})")
    return 0


def _check(args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.files] or shipped()
    bad = 0
    for path in paths:
        try:
            cfg = load(path)
        except FirmwareConfigError as exc:
            bad += 1
            print(f"INVALID {exc}", file=sys.stderr)
        else:
            print(f"ok      {path} ({cfg.kind} {cfg.model} {cfg.firmware})")
    return 1 if bad else 0


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = argparse.ArgumentParser(
        prog="devices", description="Kiosk devices: firmware configurations and checks."
    )
    sub = p.add_subparsers(dest="command", required=True)
    sp = sub.add_parser("list", help="list the firmware configurations shipped")
    sp.set_defaults(func=_list)
    sp = sub.add_parser("check", help="validate firmware configuration files")
    sp.add_argument("files", nargs="*", help="YAML files (default: the shipped ones)")
    sp.set_defaults(func=_check)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``devices``."""
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
