"""Technicians' commands of ``devices``: firmware configurations with history and signatures,
calibration results and device events.

``devices.cli`` adds them with :func:`add_technician_commands`::

    devices firmware show MODEL [--version N]
    devices firmware diff MODEL [A [B]]
    devices firmware set FILE --who ID --why TEXT [--signature FILE.sig] [--technician]
    devices firmware rollback MODEL --who ID --why TEXT [--to N]
    devices firmware history MODEL
    devices calibrations [--device ID] [--procedure NAME] [--limit N] [--json]
    devices events [--device ID] [--limit N] [--json]

State (the firmware store ``<state>/firmware``, the history ``<state>/history.sqlite3``) lives
in ``--state-dir``: default ``$RNP_DEVICES_STATE``, else ``/var/lib/rnp-kiosk/devices`` for
root and ``~/.local/state/rnp-kiosk/devices`` for other users.

Trusted firmware signers come from ``--trust DIR``: every ``DIR/firmware-signers/*.pem``,
one Ed25519 public key each in PEM (``openssl pkey -in signer.key -pubout``). A signature is
the base64 of the Ed25519 signature of the YAML file's exact bytes, in ``FILE.sig`` (by default
the one next to FILE; ``firmware.sign`` / ``firmware.write_signature`` make one).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from devices import firmware
from devices.bus import default_state_dir
from devices.exceptions import DeviceError
from devices.firmware import FIRMWARE_FOLDER

if TYPE_CHECKING:
    from devices.history import DeviceHistory


def _state(args: argparse.Namespace) -> Path:
    return Path(args.state_dir) if args.state_dir else default_state_dir()


def _store(args: argparse.Namespace) -> firmware.FirmwareStore:
    signers = firmware.load_signers(args.trust) if getattr(args, "trust", None) else []
    return firmware.FirmwareStore(_state(args) / FIRMWARE_FOLDER, signers)


def _history(args: argparse.Namespace) -> DeviceHistory:
    from devices.history import HISTORY_FILE, DeviceHistory  # lazily: numpy and OpenCV

    return DeviceHistory(_state(args) / HISTORY_FILE)


def _fail(exc: Exception) -> int:
    code = getattr(exc, "code", None)
    print(f"error: {exc}" + (f" ({code})" if code else ""), file=sys.stderr)
    return 2


# ---------------------------------------------------------------------------- firmware
def _show(args: argparse.Namespace) -> int:
    try:
        text = _store(args).show(args.model, args.version)
    except DeviceError as exc:
        return _fail(exc)
    sys.stdout.write(text)
    return 0


def _diff(args: argparse.Namespace) -> int:
    try:
        text = _store(args).diff(args.model, args.a, args.b)
    except DeviceError as exc:
        return _fail(exc)
    sys.stdout.write(text)
    if not text:
        print("(no difference)", file=sys.stderr)
    return 0


def _set(args: argparse.Namespace) -> int:
    path = Path(args.file)
    try:
        data = path.read_bytes()
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return _fail(exc)
    try:
        signature = None
        sig_path = Path(args.signature) if args.signature else firmware.signature_file(path)
        if args.signature or sig_path.exists():
            signature = firmware.read_signature(sig_path)
        store = _store(args)
        version = store.set(
            text, args.who, args.why, signature=signature, technician_mode=args.technician
        )
        model = firmware.parse(data).model
    except DeviceError as exc:
        return _fail(exc)
    _record(args, model, version, "set")
    how = "signed" if signature is not None else "technician mode, unsigned"
    print(f"{model}: version {version} is active ({how})")
    return 0


def _rollback(args: argparse.Namespace) -> int:
    try:
        store = _store(args)
        version = store.rollback(args.model, args.who, args.why, to=args.to)
        restored = store.history(args.model)[-1].rollback_to
    except DeviceError as exc:
        return _fail(exc)
    _record(args, args.model, version, "rollback")
    print(f"{args.model}: version {version} is active (the content of version {restored})")
    return 0


def _record(args: argparse.Namespace, model: str, version: int, action: str) -> None:
    """A firmware event in the device history, under the model's name (configurations are
    per model). The change itself is made and logged already: a history that cannot be
    written is a warning."""
    try:
        with _history(args) as history:
            history.event(
                model,
                "firmware",
                f"configuration {action}: version {version}",
                {"version": version, "who": args.who},
            )
    except DeviceError as exc:
        print(f"warning: the device history was not updated: {exc}", file=sys.stderr)


def _firmware_history(args: argparse.Namespace) -> int:
    try:
        changes = _store(args).history(args.model)
    except DeviceError as exc:
        return _fail(exc)
    if args.json:
        print(json.dumps([c.to_dict() for c in changes], indent=2, ensure_ascii=False))
        return 0
    if not changes:
        print(f"{args.model}: no change; the shipped configuration (version 0) is active")
    for c in changes:
        signed = f"signed by {c.signed_by}" if c.signed_by else "unsigned"
        if c.technician_mode:
            signed += ", technician mode"
        what = f"rollback to {c.rollback_to}" if c.action == "rollback" else "set"
        print(
            f"{c.version:4d}  {c.at:%Y-%m-%d %H:%M:%S}Z  {c.who}  {what}  ({signed})  "
            f"sha256 {c.sha256[:16]}  why: {c.why}"
        )
    return 0


# ----------------------------------------------------------------- history commands
def _calibrations(args: argparse.Namespace) -> int:
    try:
        with _history(args) as history:
            records = history.calibrations(args.device, args.procedure, limit=args.limit)
    except DeviceError as exc:
        return _fail(exc)
    if args.json:
        out = [
            {
                "id": r.id,
                "at": r.at.isoformat(),
                "device_id": r.device_id,
                "device_model": r.device_model,
                "procedure": r.procedure,
                "technician": r.technician,
                "passed": r.passed,
                "measured": r.measured,
                "targets": r.targets,
                "message": r.message,
            }
            for r in records
        ]
        print(json.dumps(out, indent=2, ensure_ascii=False))
        return 0
    for r in records:
        values = ", ".join(f"{k} {v:g}" for k, v in r.measured.items())
        print(
            f"{r.at:%Y-%m-%d %H:%M:%S}Z  {r.device_id}  {r.procedure:22s}  "
            f"{'PASS' if r.passed else 'FAIL'}  by {r.technician}  [{values}]  {r.message}"
        )
    return 0


def _events(args: argparse.Namespace) -> int:
    try:
        with _history(args) as history:
            events = history.events(args.device, limit=args.limit)
    except DeviceError as exc:
        return _fail(exc)
    if args.json:
        out = [
            {
                "id": e.id,
                "at": e.at.isoformat(),
                "device_id": e.device_id,
                "kind": e.kind,
                "what": e.what,
                "detail": e.detail,
            }
            for e in events
        ]
        print(json.dumps(out, indent=2, ensure_ascii=False))
        return 0
    for e in events:
        detail = f"  {json.dumps(e.detail, ensure_ascii=False)}" if e.detail else ""
        print(f"{e.at:%Y-%m-%d %H:%M:%S}Z  {e.device_id}  {e.kind:11s}  {e.what}{detail}")
    return 0


# ------------------------------------------------------------------------- the parser
def _state_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--state-dir",
        help="the devices' state folder (default: $RNP_DEVICES_STATE, /var/lib/rnp-kiosk/devices "
        "for root, else ~/.local/state/rnp-kiosk/devices)",
    )
    return common


def add_technician_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``firmware``, ``calibrations`` and ``events`` to the ``devices`` command line."""
    common = _state_options()
    trust = argparse.ArgumentParser(add_help=False)
    trust.add_argument(
        "--trust",
        help="trust folder: firmware-signers/*.pem are the trusted signers (Ed25519 public "
        "keys, PEM); without it nothing signed can be set, and signatures are not re-checked",
    )
    fp = sub.add_parser(
        "firmware", help="firmware configurations on this kiosk: versions, changes, rollbacks"
    )
    fsub = fp.add_subparsers(dest="firmware_command", required=True)

    sp = fsub.add_parser("show", parents=[common, trust], help="print a configuration")
    sp.add_argument("model", help="device model (e.g. simulated-camera)")
    sp.add_argument("--version", type=int, help="version (default: the active one; 0: shipped)")
    sp.set_defaults(func=_show)

    sp = fsub.add_parser("diff", parents=[common, trust], help="unified diff of two versions")
    sp.add_argument("model")
    sp.add_argument("a", nargs="?", type=int, help="from this version (default: before B)")
    sp.add_argument("b", nargs="?", type=int, help="to this version (default: the active one)")
    sp.set_defaults(func=_diff)

    sp = fsub.add_parser(
        "set", parents=[common, trust], help="make a configuration file the active one"
    )
    sp.add_argument("file", help="the YAML configuration (its model says which device)")
    sp.add_argument("--who", required=True, help="your technician id")
    sp.add_argument("--why", required=True, help="why the change is made")
    sp.add_argument("--signature", help="its signature file (default: FILE.sig if present)")
    sp.add_argument(
        "--technician",
        action="store_true",
        help="technician mode: accept it unsigned (recorded as such)",
    )
    sp.set_defaults(func=_set)

    sp = fsub.add_parser(
        "rollback", parents=[common, trust], help="make an earlier version active again"
    )
    sp.add_argument("model")
    sp.add_argument("--who", required=True, help="your technician id")
    sp.add_argument("--why", required=True, help="why")
    sp.add_argument("--to", type=int, help="the version to restore (default: the previous one)")
    sp.set_defaults(func=_rollback)

    sp = fsub.add_parser(
        "history", parents=[common, trust], help="the changes of a model's configuration"
    )
    sp.add_argument("model")
    sp.add_argument("--json", action="store_true", help="as JSON")
    sp.set_defaults(func=_firmware_history)

    sp = sub.add_parser("calibrations", parents=[common], help="calibration results, newest first")
    sp.add_argument("--device", help="one device id")
    sp.add_argument("--procedure", help="one procedure (e.g. focus, platen)")
    sp.add_argument("--limit", type=int, default=50)
    sp.add_argument("--json", action="store_true", help="as JSON")
    sp.set_defaults(func=_calibrations)

    sp = sub.add_parser("events", parents=[common], help="device events, newest first")
    sp.add_argument("--device", help="one device id")
    sp.add_argument("--limit", type=int, default=100)
    sp.add_argument("--json", action="store_true", help="as JSON")
    sp.set_defaults(func=_events)
