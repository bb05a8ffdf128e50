"""The ID-card reader: PC/SC through pyscard, ICAO 9303 eMRTD reading (BAC + 3DES secure
messaging), parsing and passive authentication.

One call for the kiosk::

    doc = read_document(reader_name, MRZKey("AB1234567", "900101", "300101"), trust)

returns a ``DocumentData`` (demographics from DG1/DG11, the chip's face image, the raw data
groups, the passive-authentication result and per-phase timings). Errors a person can cause
are ``CardError`` subclasses with a message that can be shown: no reader, no card, card
removed mid-read, access denied (wrong MRZ), unreadable chip.

PACE is not implemented: a chip that only offers PACE (EF.CardAccess without BAC) is refused
with a clear error; chips offering both are read with BAC.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from devices.exceptions import AccessDenied, CardError, CardRemoved, ChipError, NoCard, NoReader
from devices.icao import lds, secure, tlv
from devices.icao.lds import EMRTD_AID
from devices.icao.mrz import MRZ, AccessKey, CANKey, MRZError, MRZKey

log = logging.getLogger(__name__)

__all__ = [
    "AccessDenied",
    "CardError",
    "CardRemoved",
    "DocumentData",
    "MRZError",
    "MRZKey",
    "NoCard",
    "NoReader",
    "read_document",
    "readers",
    "wait_for_card",
    "wait_for_removal",
    "watch",
]


_T = TypeVar("_T")


STATUS = {
    0x6282: "end of file reached before the expected length",
    0x6300: "authentication failed",
    0x6581: "memory failure",
    0x6700: "wrong length",
    0x6882: "secure messaging not supported",
    0x6982: "security status not satisfied",
    0x6983: "authentication method blocked",
    0x6985: "conditions of use not satisfied",
    0x6987: "expected secure messaging data objects missing",
    0x6988: "secure messaging data objects incorrect",
    0x6A80: "incorrect data",
    0x6A82: "file not found",
    0x6A86: "incorrect P1/P2",
    0x6B00: "offset outside the file",
    0x6D00: "instruction not supported",
    0x6E00: "class not supported",
}


def describe(sw: int) -> str:
    """A readable meaning of a status word."""
    if sw & 0xFF00 == 0x6C00:
        return f"wrong Le (card offers {sw & 0xFF} bytes)"
    if sw & 0xFFF0 == 0x63C0:
        return f"verification failed, {sw & 0x0F} tries left"
    return STATUS.get(sw, "unknown status")


@dataclass(frozen=True)
class DocumentData:
    """What the kiosk gets from an ID document's chip."""

    mrz: MRZ
    face_image: bytes  # JPEG or JPEG 2000, as stored on the chip
    face_mime: str
    data_groups: dict[int, bytes]  # raw DGs as read (1, 2, and 11/12 when present)
    sod: bytes
    passive_authentication: lds.PassiveAuthentication
    full_name: str | None = None  # DG11, when present
    timings: dict[str, float] = field(default_factory=dict)  # seconds per phase

    def summary(self, show_personal: bool = False) -> dict[str, object]:
        """A printable summary; personal data only with ``show_personal``."""
        out: dict[str, object] = {
            "document_type": self.mrz.document_type,
            "issuing_state": self.mrz.issuing_state,
            "data_groups": sorted(self.data_groups),
            "face_image": {"mime": self.face_mime, "bytes": len(self.face_image)},
            "passive_authentication": {
                "status": self.passive_authentication.status,
                "reason": self.passive_authentication.reason,
            },
            "timings_ms": {k: round(v * 1000, 1) for k, v in self.timings.items()},
        }
        if show_personal:
            out |= {
                "document_number": self.mrz.document_number,
                "surname": self.mrz.primary_identifier,
                "given_names": self.mrz.secondary_identifier,
                "nationality": self.mrz.nationality,
                "date_of_birth": self.mrz.date_of_birth,
                "sex": self.mrz.sex,
                "date_of_expiry": self.mrz.date_of_expiry,
                "full_name": self.full_name,
            }
        return out


# ----------------------------------------------------------------------- PC/SC layer
def readers() -> list[str]:
    """Names of the PC/SC readers; NoReader if the PC/SC service is not running."""
    from smartcard.Exceptions import CardServiceNotFoundException
    from smartcard.pcsc.PCSCExceptions import BaseSCardException
    from smartcard.System import readers as _readers

    try:
        return [str(r) for r in _readers()]
    except (BaseSCardException, CardServiceNotFoundException) as exc:
        raise NoReader("the smart-card service (pcscd) is not running") from exc


def _reader(name: str | None):
    from smartcard.System import readers as _readers

    names = readers()
    if not names:
        raise NoReader("no card reader is connected")
    if name is None:
        return _readers()[0]
    for r in _readers():
        if str(r) == name or str(r).startswith(name):
            return r
    raise NoReader(f"card reader {name!r} is not connected")


def wait_for_card(reader: str | None = None, timeout: float = 30.0) -> str:
    """Block until a card is on ``reader`` (any reader if None); returns the reader's name.
    NoCard after ``timeout`` seconds."""
    from smartcard.CardRequest import CardRequest
    from smartcard.Exceptions import CardRequestTimeoutException

    target = [_reader(reader)] if reader else None
    request = CardRequest(timeout=timeout, readers=target)
    try:
        service = request.waitforcard()
    except CardRequestTimeoutException as exc:
        raise NoCard("no card was placed on the reader") from exc
    finally:  # release the PC/SC context now, not whenever the collector gets to it
        with contextlib.suppress(Exception):
            request.pcsccardrequest.release()
        request.pcsccardrequest.hcontext = None
    name = str(service.connection.getReader())
    with contextlib.suppress(Exception):
        service.connection.disconnect()
    return name


# vsmartcard's virtual reader: tests and the demo only, never on a real kiosk (it listens on
# every interface, and whoever connects to it is "a card" to every application)
VPCD_PORT = 35963
VPCD_CONFIG = Path("/etc/reader.conf.d/vpcd")


def virtual_reader() -> str | None:
    """Why a virtual smart-card reader (vsmartcard's vpcd) is on this machine, or None."""
    with socket.socket() as s:
        s.settimeout(0.2)
        if s.connect_ex(("127.0.0.1", VPCD_PORT)) == 0:
            return f"the vpcd virtual reader listens on port {VPCD_PORT}"
    try:
        names = readers()
    except NoReader:
        names = []
    virtual = [n for n in names if "Virtual PCD" in n]
    if virtual:
        return f"pcscd has a virtual reader ({virtual[0]})"
    if VPCD_CONFIG.exists():
        return f"pcscd is configured to load the vpcd driver ({VPCD_CONFIG})"
    return None


def card_present(reader: str) -> bool:
    """pcscd's own view of the slot (what its event handler last saw), not a connect probe."""
    from smartcard import scard

    rv, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if rv != scard.SCARD_S_SUCCESS:
        raise NoReader("the smart-card service (pcscd) is not running")
    try:
        rv, states = scard.SCardGetStatusChange(ctx, 0, [(reader, scard.SCARD_STATE_UNAWARE)])
        if rv != scard.SCARD_S_SUCCESS:
            raise NoReader(f"card reader {reader!r} is not connected")
        return bool(states[0][1] & scard.SCARD_STATE_PRESENT)
    finally:
        scard.SCardReleaseContext(ctx)


def wait_for_removal(reader: str, timeout: float = 30.0) -> bool:
    """Block until ``reader`` holds no card ("please take your card"); False on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not card_present(reader):
            return True
        time.sleep(0.1)
    return False


def watch(on_insert: Callable[[str], None], on_remove: Callable[[str], None]) -> Callable[[], None]:
    """Call ``on_insert(reader)`` / ``on_remove(reader)`` as cards come and go on any reader,
    from a background thread with a PC/SC context of its own; returns the function that stops
    watching. Stopping cancels the thread's wait, joins it and releases its context, so nothing
    is left to the interpreter's exit (pyscard's CardMonitor kept its thread and context until
    then and printed tracebacks when pcscd had stopped first). NoReader without pcscd."""
    from smartcard import scard

    rv, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if rv != scard.SCARD_S_SUCCESS:
        raise NoReader("the smart-card service (pcscd) is not running")
    stopping = threading.Event()
    gone = (scard.SCARD_E_CANCELLED, scard.SCARD_E_NO_SERVICE, scard.SCARD_E_SERVICE_STOPPED)

    def tell(callback: Callable[[str], None], reader: str) -> None:
        try:
            callback(reader)
        except Exception:
            log.exception("a card event handler failed")

    def run() -> None:
        states: dict[str, int] = {}  # reader -> the state pcscd last reported
        present: dict[str, bool] = {}
        while not stopping.is_set():
            rv, names = scard.SCardListReaders(ctx, [])
            names = list(names) if rv == scard.SCARD_S_SUCCESS else []
            for name in [n for n in present if n not in names]:  # unplugged with its card
                states.pop(name, None)
                if present.pop(name):
                    tell(on_remove, name)
            if not names:
                stopping.wait(0.5)
                continue
            watched = [(n, states.get(n, scard.SCARD_STATE_UNAWARE)) for n in names]
            # waits until a slot changes, or half a second to notice readers plugged in
            rv, changed = scard.SCardGetStatusChange(ctx, 500, watched)
            if rv in gone:
                return
            if rv != scard.SCARD_S_SUCCESS:
                if rv != scard.SCARD_E_TIMEOUT:  # a reader that went meanwhile: not a spin
                    stopping.wait(0.5)
                continue
            for name, state, _atr in changed:
                states[name] = state & ~scard.SCARD_STATE_CHANGED
                now = bool(state & scard.SCARD_STATE_PRESENT)
                if now != present.get(name, False):
                    present[name] = now
                    tell(on_insert if now else on_remove, name)

    thread = threading.Thread(target=run, name="card-watch", daemon=True)
    thread.start()

    def stop() -> None:
        if stopping.is_set():
            return
        stopping.set()
        scard.SCardCancel(ctx)
        thread.join(5)
        scard.SCardReleaseContext(ctx)

    return stop


class CardSession:
    """A connection to the card on one reader, with status words turned into errors."""

    def __init__(self, reader: str | None = None) -> None:
        from smartcard.Exceptions import CardConnectionException, NoCardException
        from smartcard.scard import SCARD_SHARE_EXCLUSIVE

        r = _reader(reader)
        self.name = str(r)
        self.connection = r.createConnection()
        try:
            # exclusive: no other program may reset the card or run its own authentication
            # in the middle of ours (a card in use elsewhere is "no card" for a moment)
            self.connection.connect(mode=SCARD_SHARE_EXCLUSIVE)
        except (NoCardException, CardConnectionException) as exc:
            raise NoCard(f"no card on {self.name}") from exc
        self.sm: secure.SecureChannel | None = None
        self.chunk = 0xDF  # READ BINARY size in use (falls back from extended lengths)

    def close(self) -> None:
        """Disconnect (the card stays on the reader)."""
        with contextlib.suppress(Exception):  # already gone is fine
            self.connection.disconnect()

    def transmit_plain(self, apdu: bytes) -> tuple[bytes, int]:
        """Send one APDU as is: (data, status word). CardRemoved if the card is gone."""
        from smartcard.Exceptions import CardConnectionException

        try:
            data, sw1, sw2 = self.connection.transmit(list(apdu))
        except CardConnectionException as exc:
            raise CardRemoved("the card was removed while it was being read") from exc
        return bytes(data), (sw1 << 8) | sw2

    def transmit(self, apdu: bytes) -> tuple[bytes, int]:
        """Send one APDU, protected when a secure channel is open."""
        if self.sm is None:
            return self.transmit_plain(apdu)
        data, sw = self.transmit_plain(self.sm.wrap_command(apdu))
        try:
            return self.sm.unwrap_response(data + sw.to_bytes(2, "big"))
        except secure.SecureMessagingError as exc:
            self.sm = None
            raise ChipError(f"secure messaging failed: {exc}") from exc

    def check(self, apdu: bytes, what: str) -> bytes:
        """Transmit and require 9000."""
        data, sw = self.transmit(apdu)
        if sw != 0x9000:
            raise ChipError(f"{what}: {describe(sw)} ({sw:04X})", sw)
        return data

    def select_file(self, fid: int) -> bool:
        """SELECT an elementary file; False if the chip has no such file."""
        _, sw = self.transmit(secure.build_command(0x00, 0xA4, 0x02, 0x0C, fid.to_bytes(2, "big")))
        if sw == 0x6A82:
            return False
        if sw != 0x9000:
            raise ChipError(f"select file {fid:04X}: {describe(sw)} ({sw:04X})", sw)
        return True

    def read_file(self, fid: int) -> bytes | None:
        """Read a whole TLV file (its length from its own header) in ``self.chunk``-byte
        reads; None if absent."""
        if not self.select_file(fid):
            return None
        head = self._read(0, 8)
        total = tlv.header_length(head) if len(head) >= 2 else len(head)
        if total > 1 << 20:
            raise ChipError(f"file {fid:04X} claims {total} bytes")
        data = bytearray(head[:total])
        while len(data) < total:
            try:
                part = self._read(len(data), min(self.chunk, total - len(data)))
            except ChipError as exc:
                if self.chunk <= 0xDF or exc.sw != 0x6700:
                    raise
                self.chunk = 0xDF  # no extended lengths on this card/reader: for the session
                continue
            if not part:
                raise ChipError(f"file {fid:04X} ended after {len(data)} of {total} bytes")
            data += part
        return bytes(data)

    def _read(self, offset: int, length: int) -> bytes:
        if offset <= 0x7FFF:
            apdu = secure.build_command(0x00, 0xB0, offset >> 8, offset & 0xFF, b"", length)
            data, sw = self.transmit(apdu)
        else:  # odd INS with an offset data object for files past 32 KB
            body = tlv.encode(0x54, offset.to_bytes(3, "big"))
            data, sw = self.transmit(secure.build_command(0x00, 0xB1, 0, 0, body, length + 4))
            if sw in (0x9000, 0x6282) and data:
                data = tlv.parse(data).value
        if sw not in (0x9000, 0x6282):
            raise ChipError(f"read binary at {offset}: {describe(sw)} ({sw:04X})", sw)
        return data


@contextmanager
def session(reader: str | None = None) -> Iterator[CardSession]:
    """A ``CardSession`` that is always disconnected."""
    s = CardSession(reader)
    try:
        yield s
    finally:
        s.close()


# --------------------------------------------------------------------- eMRTD reading
def _timed(timings: dict[str, float], name: str, fn: Callable[[], _T]) -> _T:
    t = time.perf_counter()
    try:
        return fn()
    finally:
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - t


def read_document(
    reader: str | None,
    key: AccessKey,
    trust: lds.TrustStore,
    chunk: int = 0xDF,
) -> DocumentData:
    """Open the chip with ``key`` (BAC), read COM, DG1, DG2, DG11/DG12 when present and
    EF.SOD, parse them and run passive authentication against ``trust``.

    One authentication attempt only: on a wrong key the chip counts a failure and
    AccessDenied is raised at once (no retry storm)."""
    if isinstance(key, CANKey):  # refused before anything is sent to the card
        raise AccessDenied("this kiosk reads cards with the MRZ (BAC); a CAN needs PACE")
    assert isinstance(key, MRZKey)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    with session(reader) as card:
        card.chunk = chunk
        card.check(secure.build_command(0x00, 0xA4, 0x04, 0x0C, EMRTD_AID), "select eMRTD")
        card_access = _timed(timings, "card_access", lambda: _card_access(card))

        def authenticate() -> None:
            try:
                card.sm = secure.bac(card.transmit_plain, key.seed())
            except secure.AccessDenied as exc:
                raise AccessDenied(
                    "the card refused the document data: check the document number and dates"
                ) from exc
            except secure.SecureMessagingError as exc:
                if card_access:
                    raise ChipError(
                        "this chip needs PACE, which this kiosk does not support"
                    ) from exc
                raise ChipError(f"basic access control failed: {exc}") from exc

        _timed(timings, "bac", authenticate)
        raw: dict[str, bytes | None] = {}

        def read(name: str) -> None:
            fid = lds.FILES[name][0]
            raw[name] = _timed(timings, f"read_{name}", lambda: card.read_file(fid))

        for name in ("COM", "DG1", "DG2", "SOD"):
            read(name)
            if raw[name] is None:
                raise ChipError(f"the chip has no {name}")
        _version, present = _parse(lds.parse_com, raw["COM"])
        for n in (11, 12):
            if n in present:
                read(f"DG{n}")
    t = time.perf_counter()
    mrz = _parse(lds.parse_dg1, raw["DG1"])
    face = _parse(lds.parse_dg2, raw["DG2"])
    sod = _parse(lds.parse_sod, raw["SOD"])
    groups = {
        int(name[2:]): value
        for name, value in raw.items()
        if name.startswith("DG") and value is not None
    }
    full_name = _dg11_name(groups[11]) if 11 in groups else None
    timings["parse"] = time.perf_counter() - t
    t = time.perf_counter()
    pa = lds.passive_authentication(sod, groups, trust)
    timings["passive_authentication"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    if pa.status != "valid":
        log.warning("passive authentication: %s (%s)", pa.status, pa.reason)
    return DocumentData(
        mrz, face.data, face.mime, groups, raw["SOD"] or b"", pa, full_name, timings
    )


def _parse(fn, raw):
    try:
        return fn(raw)
    except (lds.LDSError, MRZError) as exc:
        raise ChipError(f"the chip's data does not parse: {exc}") from exc


def _card_access(card: CardSession) -> bytes | None:
    """EF.CardAccess (read in plain before authentication) when the chip has one."""
    fid = lds.FILES["CardAccess"][0]
    _, sw = card.transmit_plain(
        secure.build_command(0x00, 0xA4, 0x02, 0x0C, fid.to_bytes(2, "big"))
    )
    if sw != 0x9000:
        return None
    data, sw = card.transmit_plain(secure.build_command(0x00, 0xB0, 0, 0, b"", 0))
    return data if sw in (0x9000, 0x6282) else None


def _dg11_name(raw: bytes) -> str | None:
    try:
        dg = tlv.parse(raw)
        return dg.find(0x5F0E).value.decode("utf-8").replace("<<", ", ").replace("<", " ")
    except (tlv.TLVError, UnicodeDecodeError):
        return None
