"""``devices``: tools for technicians: firmware configurations, the ID-card reader."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from devices import bus
from devices.firmware import FirmwareConfigError, load, shipped
from devices.technician_cli import add_technician_commands


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


def _card_readers(_: argparse.Namespace) -> int:
    from devices import card

    try:
        names = card.readers()
    except card.CardError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name in names:
        print(name)
    if not names:
        print("no card reader connected", file=sys.stderr)
    return 0 if names else 1


def _card_read(args: argparse.Namespace) -> int:
    from devices import card
    from devices.icao import lds, mrz

    try:
        key: mrz.AccessKey
        if args.can:
            key = mrz.CANKey(args.can)
        elif len(args.mrz) == 3 and max(map(len, args.mrz)) < 30:  # typed fields
            key = mrz.MRZKey(*args.mrz)
        else:
            key = mrz.parse("\n".join(args.mrz)).access_key()
        trust = lds.TrustStore.from_folder(args.trust) if args.trust else lds.TrustStore()
        reader = card.wait_for_card(args.reader, timeout=args.timeout)
        doc = card.read_document(
            reader, key, trust, command_timeout=args.command_timeout, deadline=args.deadline
        )
    except (card.CardError, mrz.MRZError, lds.LDSError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(doc.summary(show_personal=args.show), indent=2, ensure_ascii=False))
    return 0 if doc.passive_authentication.valid else 1


def _trust_check(args: argparse.Namespace) -> int:
    from devices.icao import lds

    try:
        store = lds.TrustStore.from_folder(args.folder)
    except OSError as exc:
        print(f"error: cannot read the trust folder: {exc}", file=sys.stderr)
        return 2
    report = store.report
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
        return 0 if report.certificates else 1
    print(
        f"{report.certificates} distinct CSCA certificates loaded from {report.folder} "
        f"({len(report.files)} files, {len(report.skipped)} items skipped)"
    )
    print("per file:")
    for f in report.files:
        line = f"  {f.name:32s} {f.kind:12s} {f.certificates:5d} loaded"
        if f.skipped:
            line += f", {f.skipped} skipped"
        print(line)
    if report.countries:
        print("per country:")
        codes = [f"{code} {n}" for code, n in report.countries.items()]
        for i in range(0, len(codes), 10):
            print("  " + ", ".join(codes[i : i + 10]))
    if report.master_lists:
        print("master lists:")
        for f in report.master_lists:
            print(
                f"  {f.name}: {f.signature}"
                + (f" ({f.signature_reason})" if f.signature_reason else "")
            )
            if f.signer:
                print(f"    signer: {f.signer}")
    if report.skipped:
        print("skipped:")
        for item in report.skipped:
            where = item.file if item.index is None else f"{item.file} #{item.index}"
            subject = f" [{item.subject}]" if item.subject else ""
            print(f"  {where}{subject}: {item.reason}")
    if not report.certificates:
        print("no certificate loaded", file=sys.stderr)
    return 0 if report.certificates else 1


def card_defaults() -> tuple[float, float]:
    """The card reader's per-command timeout and read deadline (seconds)."""
    from devices import card

    return card.COMMAND_TIMEOUT, card.READ_DEADLINE


def _serve(args: argparse.Namespace) -> int:
    import logging

    from devices import card, daemon

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # an SBI probe every 2 s: not news
    if args.simulate and (args.camera or args.document_camera):
        print(
            "error: --simulate simulates the camera and the card; it cannot be mixed with "
            "--camera or --document-camera (only --fingerprint sbi:PORT, an SBI simulated "
            "device)",
            file=sys.stderr,
        )
        return 2
    if args.start_pcscd and not args.simulate:
        print(
            "error: --start-pcscd starts pcscd with the virtual reader: --simulate only",
            file=sys.stderr,
        )
        return 2
    if not args.simulate and (why := card.virtual_reader()):
        print(
            f"error: {why}. vsmartcard's vpcd makes any program on the network a card to "
            "this kiosk: it is for tests and the demo only. Remove it (apt-get purge "
            "vsmartcard-vpcd; restart pcscd) before running real devices.",
            file=sys.stderr,
        )
        return 2
    try:
        config = daemon.DaemonConfig(
            socket_dir=Path(args.socket_dir) if args.socket_dir else bus.default_socket_dir(),
            simulated=args.simulate,
            camera=args.camera or "opencv:0",
            fingerprint=args.fingerprint,
            document_camera=args.document_camera,
            state_dir=Path(args.state_dir) if args.state_dir else None,
            card_reader=args.reader,
            trust_dir=Path(args.trust) if args.trust else None,
            socket_group=args.group,
        )
    except daemon.DaemonConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    pcscd = None
    if args.start_pcscd:
        from devices.simulation import emrtd

        try:
            pcscd = emrtd.start_pcscd()
        except emrtd.PcscdUnavailable as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    try:
        daemon.run(config)
    except bus.SocketDirError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if pcscd is not None:
            pcscd.terminate()
            pcscd.wait(timeout=10)
    return 0


def _status(args: argparse.Namespace) -> int:
    socket_dir = Path(args.socket_dir) if args.socket_dir else bus.default_socket_dir()
    try:
        status = bus.DeviceClient(socket_dir, timeout=args.timeout).status(timeout=args.timeout)
    except bus.DaemonUnavailable as exc:
        print(f"error: the device daemon does not answer in {socket_dir}: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(status, indent=2, ensure_ascii=False))
        return 0
    devices = status.get("devices") or []
    assert isinstance(devices, list)
    for d in devices:
        up = d.get("uptime_seconds")
        print(
            f"{d['kind']:12s} {d['state']:5s} {d.get('driver', ''):22s} "
            f"{d.get('vendor') or '-'} {d['model']} serial {d.get('serial') or '-'} "
            f"firmware {d.get('firmware') or '-'}"
        )
        print(
            f"{'':12s} config {d.get('config') or '-'}; up "
            f"{_duration(up) if isinstance(up, int | float) else '-'}; last error "
            f"{d.get('last_error') or 'none'}"
        )
    print(f"card present: {'yes' if status.get('card_present') else 'no'}")
    lost = [d for d in devices if d.get("state") != "ok" and d.get("driver") != "none"]
    return 1 if lost else 0


def _duration(seconds: float) -> str:
    minutes, s = divmod(int(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}h{m:02d}m" if hours else f"{m}m{s:02d}s"


def _discover(args: argparse.Namespace) -> int:
    from devices import drivers

    options = drivers.DriverOptions(trust_dir=Path(args.trust) if args.trust else None)
    found, problems = drivers.discover(options)
    for d in found:
        print(
            f"{d.kind:12s} {d.driver:24s} {d.vendor or '-'} {d.model} serial {d.serial or '-'} "
            f"firmware {d.firmware or '-'}"
        )
    for p in problems:
        print(f"not searched: {p}", file=sys.stderr)
    if not found:
        print("no device found", file=sys.stderr)
    for kind in ("camera", "fingerprint"):
        names = ", ".join(drivers.drivers(kind))
        print(f"{kind} drivers: {names}")
    return 0 if found else 1


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
    cp = sub.add_parser("card", help="the ID-card reader (PC/SC, ICAO 9303)")
    csub = cp.add_subparsers(dest="card_command", required=True)
    sp = csub.add_parser("readers", help="list the PC/SC readers")
    sp.set_defaults(func=_card_readers)
    sp = csub.add_parser("read", help="read and verify an eMRTD / CNIE chip")
    group = sp.add_mutually_exclusive_group(required=True)
    group.add_argument(
        "--mrz",
        nargs="+",
        metavar="LINE",
        help="the MRZ lines, or: DOCUMENT_NUMBER BIRTH_YYMMDD EXPIRY_YYMMDD",
    )
    group.add_argument("--can", help="the 6-digit card access number (needs PACE)")
    sp.add_argument("--reader", help="reader name (default: the first with a card)")
    sp.add_argument(
        "--command-timeout",
        type=float,
        default=card_defaults()[0],
        help="seconds one command may take before the card counts as silent (default %(default)s)",
    )
    sp.add_argument(
        "--deadline",
        type=float,
        default=card_defaults()[1],
        help="seconds the whole read may take (default %(default)s)",
    )
    sp.add_argument("--trust", help="folder of CSCA certificates / ICAO master lists")
    sp.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for a card")
    sp.add_argument("--show", action="store_true", help="print the personal data too")
    sp.set_defaults(func=_card_read)

    tp = sub.add_parser("trust", help="the CSCA trust folder of passive authentication")
    tsub = tp.add_subparsers(dest="trust_command", required=True)
    sp = tsub.add_parser(
        "check",
        help="load a folder of CSCA certificates / ICAO master lists and report what loaded, "
        "what was skipped and why, and each master list's signature",
    )
    sp.add_argument("folder", help="the trust folder (as given to serve --trust)")
    sp.add_argument("--json", action="store_true", help="the report as JSON")
    sp.set_defaults(func=_trust_check)

    sp = sub.add_parser(
        "serve", help="run the device daemon: commands on a ZeroMQ ROUTER, events on PUB"
    )
    sp.add_argument(
        "--socket-dir",
        help="private directory of the daemon's Unix sockets (default: $RNP_DEVICES_DIR, "
        "/run/rnp-kiosk for root, else $XDG_RUNTIME_DIR/rnp-kiosk)",
    )
    sp.add_argument(
        "--group", help="a group shared with the kiosk's user, when it runs as another user"
    )
    sp.add_argument(
        "--simulate",
        action="store_true",
        help="simulated camera, fingerprint reader and emulated cards: tests and demo only",
    )
    sp.add_argument("--camera", help="opencv:INDEX|FILE|URL or sbi:PORT (default opencv:0)")
    sp.add_argument(
        "--fingerprint",
        help="sbi:PORT (a MOSIP SBI 2.0 slap reader), libfprint[:DRIVER], or none (default: "
        "none; with --simulate: the simulated reader, or sbi:PORT for the SBI simulated device)",
    )
    sp.add_argument(
        "--state-dir",
        help="where the device history and firmware configurations live (default: "
        "$RNP_DEVICES_STATE, /var/lib/rnp-kiosk/devices for root)",
    )
    sp.add_argument(
        "--document-camera",
        help="opencv:INDEX|FILE|URL of the camera over the document tray (the MRZ is read "
        "from it); default: the face camera",
    )
    sp.add_argument("--reader", help="PC/SC reader name (default: the first)")
    sp.add_argument("--trust", help="folder of CSCA certificates / ICAO master lists (read only)")
    sp.add_argument(
        "--start-pcscd",
        action="store_true",
        help="with --simulate: start pcscd (with vsmartcard's virtual reader) if none runs",
    )
    sp.set_defaults(func=_serve)

    sp = sub.add_parser(
        "status", help="every device the daemon drives: driver, model, health, last error"
    )
    sp.add_argument("--socket-dir", help="the daemon's socket directory (as for serve)")
    sp.add_argument("--timeout", type=float, default=3.0)
    sp.add_argument("--json", action="store_true", help="the daemon's answer as JSON")
    sp.set_defaults(func=_status)
    sp = sub.add_parser(
        "discover",
        help="the devices this machine offers (V4L2 cameras, SBI services on 4501-4600, "
        "libfprint readers, PC/SC readers) and the drivers installed",
    )
    sp.add_argument("--trust", help="folder with the SBI device providers' CA certificates")
    sp.set_defaults(func=_discover)
    add_technician_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``devices``."""
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
