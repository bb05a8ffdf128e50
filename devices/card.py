"""The ID-card reader: PC/SC through pyscard, ICAO 9303 eMRTD reading (PACE or BAC, 3DES or
AES secure messaging), Chip and Active Authentication, parsing and passive authentication.

One call for the kiosk::

    doc = read_document(reader_name, CANKey("123456"), trust)

returns a ``DocumentData`` (demographics from DG1/DG11, the chip's face image, the raw data
groups, the passive-, chip- and active-authentication results and per-phase timings). Errors
a person can cause are ``CardError`` subclasses with a message that can be shown: no reader,
no card, card removed mid-read, access denied (wrong MRZ or CAN), a card too slow or silent,
a chip that needs a PACE variant this kiosk lacks, unreadable chip.

Access control (ICAO 9303-11, 4.2): EF.CardAccess is read from the master file before the
application is selected; PACE is used when the chip offers a variant this kiosk supports, BAC
only when the chip has no EF.CardAccess or offers no supported PACE and answers BAC.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from devices.exceptions import (
    AccessDenied,
    CardError,
    CardRemoved,
    CardTooSlow,
    ChipError,
    ChipNotGenuine,
    NoCard,
    NoReader,
)
from devices.icao import active, lds, pace, secure, tlv
from devices.icao.lds import EMRTD_AID
from devices.icao.mrz import MRZ, AccessKey, CANKey, MRZError, MRZKey

log = logging.getLogger(__name__)

__all__ = [
    "AccessDenied",
    "CardError",
    "CardRemoved",
    "CardTooSlow",
    "ChipNotGenuine",
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
Progress = Callable[[str, int, int], None]  # (file, bytes read, bytes in all)


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
    access_control: str = "BAC"  # "BAC" or the PACE variant ("PACE-ECDH-GM-AES-128", ...)
    chip_authentication: str = "not_supported"  # passed (a failure raises ChipNotGenuine)
    active_authentication: str = "not_supported"  # passed, failed or unknown
    active_authentication_reason: str = ""

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
            "access_control": self.access_control,
            "chip_authentication": self.chip_authentication,
            "active_authentication": {
                "status": self.active_authentication,
                "reason": self.active_authentication_reason,
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


# A contactless chip answers a command in milliseconds; the slowest (a PACE or Chip
# Authentication key agreement on a 2048-bit group, a 4 KB READ BINARY at 106 kbit/s) in
# well under 2 s. A whole read (PACE, ~20 KB of files, the authentications) takes 2-6 s on a
# real chip and reader: the deadline leaves room for a slow chip, not for a silent one.
COMMAND_TIMEOUT = 5.0
READ_DEADLINE = 30.0
CLOSE_WAIT = 2.0  # after a timeout: how long closing waits for the command in flight


class CardSession:
    """A connection to the card on one reader, with status words turned into errors.

    Every command runs on the session's own worker thread and is waited for at most
    ``command_timeout`` seconds, and never past ``deadline`` (a ``time.monotonic()`` value):
    a card that stops answering gives ``CardTooSlow`` instead of blocking its caller (the
    worker stays behind in PC/SC until the card goes; the connection is then released by it,
    never by a caller that would block on the same PC/SC lock)."""

    def __init__(
        self,
        reader: str | None = None,
        command_timeout: float = COMMAND_TIMEOUT,
        deadline: float | None = None,
    ) -> None:
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
        self.command_timeout = command_timeout
        self.deadline = deadline
        self.commands = 0
        self.progress: Progress | None = None
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="card-apdu")
        self._stuck = False

    def close(self) -> None:
        """Disconnect (the card stays on the reader); after a timeout, the worker does it
        once the card has answered or gone."""

        def disconnect() -> None:
            with contextlib.suppress(Exception):  # already gone is fine
                self.connection.disconnect()

        if self._stuck:
            # the worker disconnects once the card answers or goes: a slow card answers soon
            # (waited for, so that the next read finds the reader free), a silent one may not
            with contextlib.suppress(FutureTimeout):
                self._worker.submit(disconnect).result(timeout=CLOSE_WAIT)
        else:
            disconnect()
        self._worker.shutdown(wait=False)

    def transmit_plain(self, apdu: bytes) -> tuple[bytes, int]:
        """Send one APDU as is: (data, status word). CardRemoved if the card is gone,
        CardTooSlow when it does not answer in time."""
        from smartcard.Exceptions import CardConnectionException

        if self._stuck:
            raise CardTooSlow("the card stopped answering: take it off the reader and try again")
        wait = self.command_timeout
        if self.deadline is not None:
            wait = min(wait, self.deadline - time.monotonic())
            if wait <= 0:
                raise CardTooSlow(
                    "the card answers too slowly to be read in time: hold it still, flat on "
                    "the reader, and try again"
                )
        self.commands += 1
        future = self._worker.submit(self.connection.transmit, list(apdu))
        try:
            data, sw1, sw2 = future.result(timeout=wait)
        except FutureTimeout:
            self._stuck = True
            if wait < self.command_timeout:
                raise CardTooSlow(
                    "the card answers too slowly to be read in time: hold it still, flat on "
                    "the reader, and try again"
                ) from None
            raise CardTooSlow(
                f"the card did not answer within {self.command_timeout:g} s: take it off the "
                "reader and try again"
            ) from None
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

    def read_file(self, fid: int, name: str = "") -> bytes | None:
        """Read a whole TLV file (its length from its own header) in ``self.chunk``-byte
        reads, telling ``self.progress`` as it goes; None if absent."""
        name = name or f"file {fid:04X}"
        if not self.select_file(fid):
            return None
        head = self._read(0, 8)
        try:
            total = tlv.header_length(head) if len(head) >= 2 else len(head)
        except tlv.TLVError as exc:
            raise ChipError(f"{name} has a malformed header: {exc}") from exc
        if total > 1 << 20:
            raise ChipError(f"{name} claims {total} bytes")
        data = bytearray(head[:total])
        while len(data) < total:
            if self.progress is not None:
                self.progress(name, len(data), total)
            try:
                part = self._read(len(data), min(self.chunk, total - len(data)))
            except ChipError as exc:
                if self.chunk <= 0xDF or exc.sw != 0x6700:
                    raise
                self.chunk = 0xDF  # no extended lengths on this card/reader: for the session
                continue
            if not part:
                raise ChipError(f"{name} ended after {len(data)} of {total} bytes")
            data += part
        if self.progress is not None:
            self.progress(name, total, total)
        return bytes(data)

    def _read(self, offset: int, length: int) -> bytes:
        if offset <= 0x7FFF:
            apdu = secure.build_command(0x00, 0xB0, offset >> 8, offset & 0xFF, b"", length)
            data, sw = self.transmit(apdu)
        else:  # odd INS with an offset data object for files past 32 KB
            body = tlv.encode(0x54, offset.to_bytes(3, "big"))
            data, sw = self.transmit(secure.build_command(0x00, 0xB1, 0, 0, body, length + 4))
            if sw in (0x9000, 0x6282) and data:
                try:
                    data = tlv.parse(data).value
                except tlv.TLVError as exc:
                    raise ChipError(f"read binary at {offset}: malformed answer ({exc})") from exc
        if sw not in (0x9000, 0x6282):
            raise ChipError(f"read binary at {offset}: {describe(sw)} ({sw:04X})", sw)
        return data


@contextmanager
def session(
    reader: str | None = None,
    command_timeout: float = COMMAND_TIMEOUT,
    deadline: float | None = None,
) -> Iterator[CardSession]:
    """A ``CardSession`` that is always disconnected."""
    s = CardSession(reader, command_timeout, deadline)
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
    *,
    command_timeout: float = COMMAND_TIMEOUT,
    deadline: float = READ_DEADLINE,
    progress: Progress | None = None,
) -> DocumentData:
    """Open the chip with ``key`` (PACE when the chip offers it, else BAC), read EF.COM,
    DG1, DG2, DG11/DG12, DG14/DG15 when present and EF.SOD; run Chip Authentication (DG14)
    and Active Authentication (DG15) when the chip offers them, parse the files and run
    passive authentication against ``trust``.

    One authentication attempt only: on a wrong key the chip counts a failure and
    AccessDenied is raised at once (no retry storm). Every command is given
    ``command_timeout`` seconds and the whole read ``deadline`` seconds (CardTooSlow);
    ``progress(file, done, total)`` is called as the files come in (DG2 chunk by chunk).
    Only CardError subclasses are raised."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    with session(reader, command_timeout, time.monotonic() + deadline) as card:
        card.chunk = chunk
        card.progress = progress
        infos = _timed(timings, "card_access", lambda: _card_access(card))
        method = _timed(timings, "access_control", lambda: _open(card, key, infos))
        raw: dict[str, bytes | None] = {}

        def read(name: str, required: bool = True) -> bytes | None:
            fid = lds.FILES[name][0]
            raw[name] = _timed(timings, f"read_{name}", lambda: card.read_file(fid, name))
            if raw[name] is None and required:
                raise ChipError(f"the chip has no {name}")
            return raw[name]

        read("COM")
        _version, present = _parse(lds.parse_com, raw["COM"])
        ca = "not_supported"
        if 14 in present and (dg14 := read("DG14", required=False)) is not None:
            ca = _timed(timings, "chip_authentication", lambda: _chip_auth(card, dg14))
        for name in ("DG1", "DG2"):
            read(name)
        for n in (11, 12, 15):
            if n in present:
                read(f"DG{n}", required=False)
        aa, aa_reason = "not_supported", ""
        if raw.get("DG15") is not None:
            aa, aa_reason = _timed(
                timings, "active_authentication", lambda: _active_auth(card, raw)
            )
        read("SOD")
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
    if aa == "failed":
        log.warning("active authentication failed (%s)", aa_reason)
    return DocumentData(
        mrz,
        face.data,
        face.mime,
        groups,
        raw["SOD"] or b"",
        pa,
        full_name,
        timings,
        method,
        ca,
        aa,
        aa_reason,
    )


def _open(card: CardSession, key: AccessKey, infos: pace.SecurityInfos | None) -> str:
    """Access control: PACE with the best variant the chip offers that this kiosk supports,
    else BAC; then the eMRTD application is selected. Returns the method used."""
    offered = infos.pace if infos is not None else []
    usable = sorted((i for i in offered if i.supported), key=_preference)
    if usable:
        info = usable[0]
        try:
            card.sm = pace.pace(card.transmit_plain, key, info)
        except AccessDenied as exc:
            what = "card access number (CAN)" if isinstance(key, CANKey) else "document data"
            raise AccessDenied(f"the card refused the {what}: check it and try again") from exc
        except (pace.PACEError, secure.SecureMessagingError) as exc:
            raise ChipError(f"PACE failed: {exc}") from exc
        card.check(secure.build_command(0x00, 0xA4, 0x04, 0x0C, EMRTD_AID), "select eMRTD")
        return info.name
    if offered and (isinstance(key, CANKey) or not _bac_offered(card)):
        raise _unsupported(offered)
    if isinstance(key, CANKey):
        raise AccessDenied(
            "this card has no PACE: it is opened with the document number and the dates, "
            "not with a CAN"
        )
    assert isinstance(key, MRZKey)
    card.check(secure.build_command(0x00, 0xA4, 0x04, 0x0C, EMRTD_AID), "select eMRTD")
    try:
        card.sm = secure.bac(card.transmit_plain, key.seed())
    except secure.AccessDenied as exc:
        raise AccessDenied(
            "the card refused the document data: check the document number and dates"
        ) from exc
    except secure.SecureMessagingError as exc:
        if offered:
            raise _unsupported(offered) from exc
        raise ChipError(f"basic access control failed: {exc}") from exc
    return "BAC"


def _unsupported(offered: list[pace.PACEInfo]) -> pace.PACEUnsupported:
    """The error for a chip whose PACE variants this kiosk lacks: never "check the MRZ"."""
    return pace.PACEUnsupported(
        f"this card needs {offered[0].name}, which this kiosk does not support"
    )


def _preference(info: pace.PACEInfo) -> tuple[int, int, int]:
    """Generic Mapping over ECDH with the strongest AES first (the fastest and strongest a
    chip offers); the chip's own order breaks ties (sorted() is stable)."""
    return (
        0 if info.agreement == "ECDH" else 1,
        0 if info.cipher == "AES" else 1,
        -info.key_bits,
    )


def _bac_offered(card: CardSession) -> bool:
    """Whether a chip that offers only unsupported PACE variants also answers BAC: it gives
    a challenge inside the eMRTD application (a PACE-only chip refuses both)."""
    _, sw = card.transmit_plain(secure.build_command(0x00, 0xA4, 0x04, 0x0C, EMRTD_AID))
    if sw != 0x9000:
        return False
    challenge, sw = card.transmit_plain(bytes.fromhex("0084000008"))
    return sw == 0x9000 and len(challenge) == 8


def _chip_auth(card: CardSession, dg14: bytes) -> str:
    """Chip Authentication with DG14's key; the new channel must carry the next command.
    ``not_supported`` when DG14 offers no variant this kiosk runs."""
    try:
        infos = pace.parse_security_infos(dg14)
    except pace.PACEError as exc:
        raise ChipError(f"DG14 does not parse: {exc}") from exc
    if not infos.chip_authentication or not infos.chip_authentication_keys:
        return "not_supported"
    try:
        channel = pace.chip_authentication(card.transmit, infos)
    except pace.PACEUnsupported:
        return "not_supported"
    except (pace.PACEError, secure.SecureMessagingError) as exc:
        raise ChipNotGenuine(f"chip authentication failed: {exc}") from exc
    except ChipError as exc:
        raise ChipNotGenuine(f"the chip refused chip authentication: {exc}") from exc
    card.sm = channel
    try:  # a copied chip lacks the private key: it cannot answer under the new keys
        card.check(secure.build_command(0x00, 0xA4, 0x04, 0x0C, EMRTD_AID), "select eMRTD")
    except ChipError as exc:
        raise ChipNotGenuine(
            "chip authentication failed: the chip does not hold its key (a copied chip?)"
        ) from exc
    return "passed"


def _active_auth(card: CardSession, raw: dict[str, bytes | None]) -> tuple[str, str]:
    """Active Authentication: the chip signs a fresh challenge with DG15's key (for an EC
    key, with the signature algorithm DG14's ActiveAuthenticationInfo names)."""
    algorithm = None
    if (dg14 := raw.get("DG14")) is not None:
        with contextlib.suppress(pace.PACEError):
            found = pace.parse_security_infos(dg14).active_authentication
            algorithm = found[0].signature_algorithm if found else None
    dg15 = raw["DG15"]
    assert dg15 is not None
    result = active.active_authentication(card.transmit, dg15, algorithm)
    return result.status, result.reason


def _parse(fn, raw):
    try:
        return fn(raw)
    except (lds.LDSError, MRZError) as exc:
        raise ChipError(f"the chip's data does not parse: {exc}") from exc


def _card_access(card: CardSession) -> pace.SecurityInfos | None:
    """EF.CardAccess, read in plain from the master file before any application is
    selected (where ICAO 9303-10 puts it), parsed; None when the chip has none."""
    fid = lds.FILES["CardAccess"][0]
    _, sw = card.transmit_plain(
        secure.build_command(0x00, 0xA4, 0x02, 0x0C, fid.to_bytes(2, "big"))
    )
    if sw != 0x9000:
        return None
    data = bytearray()
    total = None
    while total is None or len(data) < total:
        part, sw = card.transmit_plain(
            secure.build_command(0x00, 0xB0, len(data) >> 8, len(data) & 0xFF, b"", 0xDF)
        )
        if sw not in (0x9000, 0x6282) or not part:
            break
        data += part
        if total is None:
            try:
                total = tlv.header_length(bytes(data))
            except tlv.TLVError as exc:
                raise ChipError(f"EF.CardAccess does not parse: {exc}") from exc
            if total > 4096:
                raise ChipError(f"EF.CardAccess claims {total} bytes")
        if sw == 0x6282:
            break
    if not data:
        return None
    try:
        return pace.parse_security_infos(bytes(data[:total]))
    except pace.PACEError as exc:
        raise ChipError(f"EF.CardAccess does not parse: {exc}") from exc


def _dg11_name(raw: bytes) -> str | None:
    try:
        dg = tlv.parse(raw)
        return dg.find(0x5F0E).value.decode("utf-8").replace("<<", ", ").replace("<", " ")
    except (tlv.TLVError, UnicodeDecodeError):
        return None
