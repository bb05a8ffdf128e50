"""``kiosk``: the enrolment kiosk's command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _demo(args: argparse.Namespace) -> int:
    from kiosk.demo import main as demo

    return demo(Path(args.workdir), ui=args.ui, sbi=args.sbi)


def _keygen(args: argparse.Namespace) -> int:
    from kiosk.client import KioskIdentity

    ident = KioskIdentity.generate(args.kiosk_id)
    ident.save(Path(args.out))
    print(ident.public_key_b64())
    return 0


def _b64_key(value: str | None, file: str | None) -> bytes:
    import base64
    import binascii

    from kiosk.client import ConfigError

    try:
        raw = value or Path(file or "").read_text().strip()
        return base64.b64decode(raw, validate=True)
    except (OSError, binascii.Error, ValueError) as exc:
        raise ConfigError(f"registry key {file or '(given)'}: {exc}") from exc


def _registry_keys(args: argparse.Namespace) -> tuple[bytes, bytes]:
    """The registry's packet key (sealed to) and signing key (its answers verified with)."""
    return (
        _b64_key(args.registry_key, args.registry_key_file),
        _b64_key(args.registry_signing_key, args.registry_signing_key_file),
    )


def _identity(args: argparse.Namespace):
    from kiosk.client import KioskIdentity

    return KioskIdentity.load(args.kiosk_id, Path(args.key))


def _sync(args: argparse.Namespace) -> int:
    """Run only the outbox sync worker (technicians; the kill -9 tests)."""
    import signal
    import threading

    from kiosk.client import CentralClient
    from kiosk.outbox import Outbox, OutboxState, SyncWorker

    data = Path(args.data_dir)
    outbox = Outbox(data / "outbox.db", Outbox.load_key(data / "outbox.key"))
    client = CentralClient(
        args.central, _identity(args), *_registry_keys(args), timeout=15, retries=0
    )
    worker = SyncWorker(outbox, client, backoff=args.backoff, status_every=args.status_every)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    worker.start()
    while not done.wait(0.5):
        counts = outbox.counts()
        if (
            args.until_empty
            and not counts.get(OutboxState.QUEUED)
            and not counts.get(OutboxState.ACKED)
        ):
            break
    worker.stop()
    print(json.dumps(outbox.counts(), sort_keys=True))
    return 0


def _serve(args: argparse.Namespace) -> int:
    from devices.bus import DeviceClient
    from kiosk.session import KioskSettings, Operators
    from kiosk.web import assemble, serve_ui

    kiosk = assemble(
        KioskSettings(
            args.kiosk_id,
            centre=args.centre,
            idle_timeout=args.idle_timeout,
            trust_dir=Path(args.trust),
        ),
        Path(args.data_dir),
        args.central,
        _registry_keys(args),
        _identity(args),
        DeviceClient(Path(args.devices_dir) if args.devices_dir else None),
        Operators(Path(args.operators), Path(args.data_dir)),
    )
    serve_ui(kiosk, args.host, args.port)
    return 0


def _operator_add(args: argparse.Namespace) -> int:
    import getpass

    from kiosk.session import Operators

    pin = args.pin or getpass.getpass("PIN (4-12 digits): ")
    Operators(Path(args.operators)).add(args.operator_id, args.role, pin)
    print(f"{args.role} {args.operator_id} saved")
    return 0


def _requeue(args: argparse.Namespace) -> int:
    """Send refused packets again (after fixing what the registry refused them for)."""
    from kiosk.outbox import Outbox, OutboxState

    data = Path(args.data_dir)
    outbox = Outbox(data / "outbox.db", Outbox.load_key(data / "outbox.key"))
    if not args.all and not args.packet_id:
        for e in outbox.listing():
            if e.state == OutboxState.REFUSED:
                created = f"{e.created_at:%Y-%m-%d %H:%M}"
                print(f"{e.packet_id}  {e.receipt_number}  {created}  {e.last_error}")
        return 0
    done = outbox.requeue(None if args.all else args.packet_id)
    print(f"{len(done)} packet(s) queued again")
    return 0 if done or args.all else 1


def _operator_unlock(args: argparse.Namespace) -> int:
    from kiosk.session import Operators

    Operators(Path(args.operators), Path(args.data_dir)).unlock(args.operator_id)
    print(f"{args.operator_id} unlocked")
    return 0


def _voice(args: argparse.Namespace) -> int:
    from kiosk import voice
    from kiosk.web import catalogue

    if args.action == "render":
        slots = voice.render({lang: catalogue(lang) for lang in voice.LANGUAGES})
        n = sum(len(v) for v in slots.values())
        print(f"{n} spoken messages in {voice.OUTPUT}")
    for lang, keys in voice.recordings_wanted().items():
        if keys:
            stand_in = "espeak-ng" if lang in voice.ESPEAK_VOICES else "a chime"
            print(
                f"{lang}: {len(keys)} message(s) wait for a {voice.RECORDINGS[lang]} recording "
                f"(kiosk/voice_recorded/{lang}/<key>.wav; {stand_in} plays meanwhile): "
                + ", ".join(keys[:4])
                + (" ..." if len(keys) > 4 else "")
            )
    return 0


def _browser(args: argparse.Namespace) -> int:
    import shlex
    import subprocess

    from kiosk.web import browser_command

    cmd = browser_command(args.url, args.chromium)
    if args.print:
        print(shlex.join(cmd))
        return 0
    return subprocess.run(cmd, check=False).returncode  # (its service restarts it on exit)


def _kiosk_args(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--kiosk-id", required=True)
    sp.add_argument("--key", required=True, help="this kiosk's Ed25519 PEM key (kiosk keygen)")
    sp.add_argument("--central", required=True, help="registry base URL")
    g = sp.add_mutually_exclusive_group(required=True)
    g.add_argument("--registry-key", help="base64 X25519 public key packets are sealed to")
    g.add_argument("--registry-key-file", help="file holding that key")
    g = sp.add_mutually_exclusive_group(required=True)
    g.add_argument(
        "--registry-signing-key", help="base64 Ed25519 public key the registry signs answers with"
    )
    g.add_argument("--registry-signing-key-file", help="file holding that key")
    sp.add_argument("--data-dir", default="var/kiosk", help="outbox and its key")


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
    sp.add_argument(
        "--sbi",
        action="store_true",
        help="the fingerprint reader is an SBI simulated device (its own process, the MOSIP "
        "SBI 2.0 protocol) instead of the in-process simulated reader",
    )
    sp.set_defaults(func=_demo)
    sp = sub.add_parser(
        "keygen",
        help="create this kiosk's signing key; prints the public key to register centrally",
    )
    sp.add_argument("kiosk_id")
    sp.add_argument("--out", required=True, help="file for the PEM private key (mode 600)")
    sp.set_defaults(func=_keygen)

    sp = sub.add_parser("serve", help="run the kiosk UI (http://127.0.0.1:8080) and outbox sync")
    _kiosk_args(sp)
    sp.add_argument("--host", default="127.0.0.1")
    sp.add_argument("--port", type=int, default=8080)
    sp.add_argument(
        "--devices-dir", help="the device daemon's socket directory (as for devices serve)"
    )
    sp.add_argument(
        "--trust",
        required=True,
        help="folder of CSCA certificates / ICAO master lists: the kiosk verifies every chip "
        "against it itself",
    )
    sp.add_argument("--operators", default="var/kiosk/operators.json")
    sp.add_argument("--centre", default="Centre de services")
    sp.add_argument("--idle-timeout", type=float, default=180.0)
    sp.set_defaults(func=_serve)

    sp = sub.add_parser("sync", help="send the outbox to the registry (no UI)")
    _kiosk_args(sp)
    sp.add_argument("--backoff", type=float, default=1.0, help="first retry delay, seconds")
    sp.add_argument("--status-every", type=float, default=2.0)
    sp.add_argument("--until-empty", action="store_true", help="exit when all are decided")
    sp.set_defaults(func=_sync)

    sp = sub.add_parser(
        "requeue",
        help="list the packets the registry refused, or send them again (--all or PACKET_ID)",
    )
    sp.add_argument("packet_id", nargs="?")
    sp.add_argument("--all", action="store_true", help="every refused packet")
    sp.add_argument("--data-dir", default="var/kiosk", help="outbox and its key")
    sp.set_defaults(func=_requeue)

    sp = sub.add_parser("operator-unlock", help="lift an operator's PIN lockout")
    sp.add_argument("operator_id")
    sp.add_argument("--operators", default="var/kiosk/operators.json")
    sp.add_argument("--data-dir", default="var/kiosk", help="where lockouts are kept")
    sp.set_defaults(func=_operator_unlock)

    sp = sub.add_parser("operator-add", help="add an operator or supervisor with a PIN")
    sp.add_argument("operator_id")
    sp.add_argument("--role", choices=["operator", "supervisor", "technician"], default="operator")
    sp.add_argument("--pin", help="(prompted when not given)")
    sp.add_argument("--operators", default="var/kiosk/operators.json")
    sp.set_defaults(func=_operator_add)

    sp = sub.add_parser(
        "browser",
        help="open the kiosk screen: Chromium in kiosk mode, printing straight to the printer",
    )
    sp.add_argument("--url", default="http://127.0.0.1:8080")
    sp.add_argument("--chromium", default="chromium")
    sp.add_argument("--print", action="store_true", help="print the command instead")
    sp.set_defaults(func=_browser)

    sp = sub.add_parser(
        "voice",
        help="render the spoken guidance (build time), or list the recordings still missing",
    )
    sp.add_argument("action", choices=["render", "status"])
    sp.set_defaults(func=_voice)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``kiosk``."""
    from kiosk.client import ConfigError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"kiosk: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
