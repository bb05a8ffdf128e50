"""An emulated eMRTD chip (PACE and/or BAC, 3DES or AES secure messaging, Chip and Active
Authentication) and the documents it carries.

The card plugs into the real PC/SC stack through vsmartcard's ``vpcd`` reader driver: it
connects to pcscd's vpcd socket (TCP 35963 by default) and answers the driver's power,
reset, ATR and APDU messages, so the kiosk reads it through pcscd and pyscard exactly as it
reads a card on a hardware reader. Used by the tests and by the simulated kiosk.

``issue_document`` builds a complete LDS (EF.COM, DG1, DG2, optional DG11, DG14 and DG15,
EF.SOD) signed by a ``DocumentPKI`` (a test CSCA and Document Signer) -- never a real
country's keys -- and, for a PACE chip, EF.CardAccess in the master file. ``CNIE`` is the
profile of the Moroccan CNIE 2020 as the kiosk meets it: PACE (CAN or MRZ) only, Chip and
Active Authentication.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import logging
import os
import secrets
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from asn1crypto import algos, cms
from asn1crypto import core as asn1
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from devices.exceptions import DeviceError
from devices.icao import active, lds, secure, tlv
from devices.icao import ec as ec_mod
from devices.icao import mrz as mrz_mod
from devices.icao import pace as pace_mod
from devices.icao.lds import EMRTD_AID

log = logging.getLogger(__name__)

VPCD_PORT = 35963
VPCD_DRIVER = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so"


# ------------------------------------------------------------------------ test PKI
@dataclass(frozen=True)
class DocumentPKI:
    """A country signing CA and a document signer (EC P-256), for emulated documents."""

    csca_key: ec.EllipticCurvePrivateKey
    csca: x509.Certificate
    ds_key: ec.EllipticCurvePrivateKey
    ds: x509.Certificate

    @classmethod
    def create(
        cls,
        country: str = "MA",
        now: dt.datetime | None = None,
        ds_valid_days: tuple[int, int] = (-30, 3650),
    ) -> DocumentPKI:
        """A fresh CSCA and DS; ``ds_valid_days`` (start, end) relative to ``now``."""
        now = now or dt.datetime.now(dt.UTC)
        csca_key = ec.generate_private_key(ec.SECP256R1())
        ds_key = ec.generate_private_key(ec.SECP256R1())
        csca_name = x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, country),
                x509.NameAttribute(NameOID.COMMON_NAME, f"CSCA {country} (test)"),
            ]
        )
        csca = (
            x509.CertificateBuilder()
            .subject_name(csca_name)
            .issuer_name(csca_name)
            .public_key(csca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=365))
            .not_valid_after(now + dt.timedelta(days=365 * 15))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .sign(csca_key, hashes.SHA256())
        )
        start, end = ds_valid_days
        ds = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.COUNTRY_NAME, country),
                        x509.NameAttribute(
                            NameOID.COMMON_NAME, f"Document Signer {country} (test)"
                        ),
                    ]
                )
            )
            .issuer_name(csca_name)
            .public_key(ds_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now + dt.timedelta(days=start))
            .not_valid_after(now + dt.timedelta(days=end))
            .add_extension(
                x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                critical=True,
            )
            .sign(csca_key, hashes.SHA256())
        )
        return cls(csca_key, csca, ds_key, ds)

    def csca_pem(self) -> bytes:
        """The CSCA certificate, for a trust-list folder."""
        return self.csca.public_bytes(serialization.Encoding.PEM)


# ---------------------------------------------------------------------- documents
def face_record(image: bytes, width: int, height: int, jpeg2000: bool = False) -> bytes:
    """An ISO/IEC 19794-5:2005 face record holding one full-frontal image."""
    info = bytes([1, 1 if jpeg2000 else 0]) + struct.pack(">HHBBHH", width, height, 1, 2, 0, 0)
    block = struct.pack(">IH", 20 + 12 + len(image), 0) + bytes(14) + info + image
    return b"FAC\x00010\x00" + struct.pack(">IH", 14 + len(block), 1) + block


def dg2(image: bytes, width: int, height: int) -> bytes:
    """DG2 with one face (biometric information template group)."""
    header = tlv.encode(
        0xA1,
        tlv.encode(0x80, b"\x01\x01")
        + tlv.encode(0x81, b"\x02")
        + tlv.encode(0x87, b"\x01\x01")
        + tlv.encode(0x88, b"\x00\x08"),
    )
    bit = tlv.encode(0x7F60, header + tlv.encode(0x5F2E, face_record(image, width, height)))
    return tlv.encode(0x75, tlv.encode(0x7F61, tlv.encode(0x02, b"\x01") + bit))


def dg1(mrz_text: str) -> bytes:
    """DG1 holding the MRZ (lines concatenated)."""
    raw = "".join(mrz_text.split()).encode("ascii")
    return tlv.encode(0x61, tlv.encode(0x5F1F, raw))


def dg11(full_name: str, place_of_birth: str = "") -> bytes:
    """DG11 (additional personal details): full name and place of birth."""
    tags = b"\x5f\x0e" + (b"\x5f\x11" if place_of_birth else b"")
    body = tlv.encode(0x5C, tags) + tlv.encode(0x5F0E, full_name.encode("utf-8"))
    if place_of_birth:
        body += tlv.encode(0x5F11, place_of_birth.encode("utf-8"))
    return tlv.encode(0x6B, body)


def com(groups: list[int]) -> bytes:
    """EF.COM listing ``groups``."""
    tag_of = {n: t for t, n in lds.DG_TAGS.items()}
    return tlv.encode(
        0x60,
        tlv.encode(0x5F01, b"0107")
        + tlv.encode(0x5F36, b"040000")
        + tlv.encode(0x5C, bytes(tag_of[g] for g in groups)),
    )


def sod(groups: dict[int, bytes], pki: DocumentPKI) -> bytes:
    """EF.SOD: SHA-256 hashes of ``groups`` signed by the PKI's document signer."""
    lso = lds.LDSSecurityObject(
        {
            "version": 0,
            "hash_algorithm": {"algorithm": "sha256"},
            "data_group_hash_values": [
                {"data_group_number": n, "data_group_hash_value": hashlib.sha256(raw).digest()}
                for n, raw in sorted(groups.items())
            ],
        }
    ).dump()
    attrs = cms.CMSAttributes(
        [
            {"type": "content_type", "values": [lds.LDS_SECURITY_OBJECT]},
            {"type": "message_digest", "values": [hashlib.sha256(lso).digest()]},
        ]
    )
    signature = pki.ds_key.sign(attrs.dump(), ec.ECDSA(hashes.SHA256()))
    ds = pki.ds.public_bytes(serialization.Encoding.DER)
    from asn1crypto import x509 as asn1_x509

    ds_asn1 = asn1_x509.Certificate.load(ds)
    signed = cms.SignedData(
        {
            "version": "v3",
            "digest_algorithms": [{"algorithm": "sha256"}],
            "encap_content_info": {
                "content_type": lds.LDS_SECURITY_OBJECT,
                "content": asn1.ParsableOctetString(lso),
            },
            "certificates": [ds_asn1],
            "signer_infos": [
                {
                    "version": "v1",
                    "sid": cms.SignerIdentifier(
                        name="issuer_and_serial_number",
                        value={
                            "issuer": ds_asn1.issuer,
                            "serial_number": ds_asn1.serial_number,
                        },
                    ),
                    "digest_algorithm": {"algorithm": "sha256"},
                    "signed_attrs": attrs,
                    "signature_algorithm": algos.SignedDigestAlgorithm(
                        {"algorithm": "sha256_ecdsa"}
                    ),
                    "signature": signature,
                }
            ],
        }
    )
    info = cms.ContentInfo({"content_type": "signed_data", "content": signed})
    return tlv.encode(0x77, info.dump())


@dataclass
class Document:
    """The files of an emulated document, the keys that open it and the chip's own keys."""

    mrz: mrz_mod.MRZ
    files: dict[int, bytes]  # file identifier -> content, inside the eMRTD application
    can: str | None = None  # card access number (PACE-CAN)
    card_access: bytes | None = None  # EF.CardAccess in the master file (PACE chips)
    pace: list[pace_mod.PACEInfo] = field(default_factory=list)
    bac: bool = True  # answers BAC (False: a PACE-only chip, like the CNIE 2020)
    chip_key: tuple[int, ec_mod.Curve] | None = None  # Chip Authentication (DG14)
    aa_key: active.PrivateKey | None = None  # Active Authentication (DG15)
    aa_algorithm: str | None = None  # the signature algorithm DG14 names for an EC AA key

    @property
    def key(self) -> mrz_mod.MRZKey:
        """The MRZ key printed on the document (BAC, or PACE with the MRZ)."""
        return self.mrz.access_key()

    @property
    def can_key(self) -> mrz_mod.CANKey:
        """The CAN printed on the card's front (PACE-CAN)."""
        if self.can is None:
            raise ValueError("this document has no CAN")
        return mrz_mod.CANKey(self.can)


# PACE-ECDH-GM-AES-128 on brainpoolP256r1 (standardized domain parameters 13): what current
# European eID cards and passports offer first
PACE_ECDH_GM_AES128 = "0.4.0.127.0.7.2.2.4.2.2"
CNIE: dict[str, object] = {
    "pace": [(PACE_ECDH_GM_AES128, 13)],
    "bac": False,
    "chip_authentication": "brainpoolP256r1",
    "active_authentication": "ec",
}


def issue_document(
    mrz_text: str,
    face_jpeg: bytes,
    face_size: tuple[int, int],
    pki: DocumentPKI,
    full_name: str | None = None,
    tamper_dg: int | None = None,
    *,
    can: str | None = None,
    pace: list[tuple[str, int | None]] | None = None,
    bac: bool = True,
    chip_authentication: str | None = None,
    active_authentication: str | None = None,
) -> Document:
    """A complete LDS for ``mrz_text`` and a JPEG face. ``tamper_dg`` alters that data
    group after signing (a forged document for tests).

    ``pace``: the (protocol OID, standardized domain parameter id) variants the chip offers
    in EF.CardAccess; ``bac`` whether it also answers BAC; ``chip_authentication`` a curve
    name for a DG14 Chip Authentication key (ECDH, AES-128); ``active_authentication``
    ``"rsa"`` or ``"ec"`` for a DG15 key."""
    parsed = mrz_mod.parse(mrz_text)
    groups = {1: dg1(mrz_text), 2: dg2(face_jpeg, *face_size)}
    if full_name:
        groups[11] = dg11(full_name)
    chip_key = aa_key = aa_algorithm = None
    if chip_authentication is not None or active_authentication == "ec":
        ca_info: list[tuple[int, ec_mod.Curve]] = []
        if chip_authentication is not None:
            curve = ec_mod.CURVES[chip_authentication]
            chip_key = (secrets.randbelow(curve.n - 1) + 1, curve)
            ca_info.append(chip_key)
        if active_authentication == "ec":
            aa_algorithm = active.ECDSA_PLAIN_SHA256
        groups[14] = pace_mod.dg14(ca_info, aa_algorithm)
    if active_authentication is not None:
        aa_key = (
            active.generate_key("ec")
            if active_authentication == "ec"
            else active.generate_key("rsa")
        )
        groups[15] = active.dg15(aa_key)
    security = sod(groups, pki)
    if tamper_dg is not None:
        raw = bytearray(groups[tamper_dg])
        raw[-1] ^= 0x01
        groups[tamper_dg] = bytes(raw)
    fid = {n: lds.FILES[f"DG{n}"][0] for n in groups}
    files = {fid[n]: raw for n, raw in groups.items()}
    files[lds.FILES["COM"][0]] = com(sorted(groups))
    files[lds.FILES["SOD"][0]] = security
    infos = [pace_mod.PACEInfo(oid, 2, parameter) for oid, parameter in pace or []]
    return Document(
        parsed,
        files,
        can=can,
        card_access=pace_mod.card_access(infos) if infos else None,
        pace=infos,
        bac=bac,
        chip_key=chip_key,
        aa_key=aa_key,
        aa_algorithm=aa_algorithm,
    )


# ---------------------------------------------------------------------------- chip
SW_OK, SW_EOF = 0x9000, 0x6282
SW_WRONG_LENGTH, SW_SECURITY, SW_BLOCKED = 0x6700, 0x6982, 0x6983
SW_SM_MISSING, SW_SM_WRONG = 0x6987, 0x6988
SW_NOT_FOUND, SW_WRONG_P1P2, SW_OFFSET = 0x6A82, 0x6A86, 0x6B00
SW_INS, SW_CLA, SW_AUTH_FAILED = 0x6D00, 0x6E00, 0x6300
SW_CONDITIONS = 0x6985
_CARD_ACCESS = 0x011C


@dataclass
class EmulatedChip:
    """ISO 7816-4 / ICAO 9303 card logic: SELECT (EF.CardAccess in the master file, the eMRTD
    application, its files), PACE (MSE:Set AT and chained GENERAL AUTHENTICATE), BAC (GET
    CHALLENGE, EXTERNAL AUTHENTICATE), READ BINARY (B0 and B1, short and extended Le) under
    secure messaging, Chip Authentication (restarting secure messaging with new keys) and
    Active Authentication (INTERNAL AUTHENTICATE).

    Failed authentications are counted: after ``max_failures`` in a row the chip answers
    "authentication method blocked" until it is reset (powered off and on). ``wrong_key_sw``
    is the status word a wrong BAC key gets (6300 on most chips, 6988 on some)."""

    document: Document
    max_failures: int = 5
    max_response: int = 4096
    extended_length: bool = True  # False: refuse Lc > 255 / Le > 256 like older chips
    wrong_key_sw: int = 0x6300
    failures: int = 0
    _app: bool = False
    _challenge: bytes | None = None
    _sm: secure.SecureChannel | None = None
    _file: int | None = None
    _pace: pace_mod.PACEChip | None = None
    _ca: pace_mod.CAChip | None = None
    commands: list[bytes] = field(default_factory=list)  # INS bytes seen (for tests)

    def reset(self) -> None:
        """Power cycle: the session and selection are gone (the failure count stays)."""
        self._app, self._challenge, self._sm, self._file = False, None, None, None
        self._pace = self._ca = None
        if self.failures >= self.max_failures:
            self.failures = 0

    def process(self, apdu: bytes) -> bytes:
        """One command APDU in, one response APDU out."""
        try:
            cla, ins, *_ = secure.split_command(apdu)
        except secure.SecureMessagingError:
            return SW_WRONG_LENGTH.to_bytes(2, "big")
        self.commands.append(bytes([ins]))
        if cla & 0x0C:
            if self._sm is None:
                return SW_SM_MISSING.to_bytes(2, "big")
            try:
                plain = self._sm.unwrap_command(apdu)
            except secure.SecureMessagingError:
                self._sm = None  # a broken channel ends the session
                return SW_SM_WRONG.to_bytes(2, "big")
            data, sw, after = self._dispatch_secured(plain)
            response = self._sm.wrap_response(data, sw, odd_ins=bool(ins & 1))
            if after is not None:  # Chip Authentication: new keys from the next command on
                self._sm = after
            return response
        if cla & ~0x10 not in (0x00, 0x80):
            return SW_CLA.to_bytes(2, "big")
        if self._sm is not None and ins not in (0xA4, 0x84):
            self._sm = None  # plain command during SM: session aborted
        data, sw = self._dispatch(apdu, secured=False)
        return data + sw.to_bytes(2, "big")

    def _dispatch_secured(self, apdu: bytes) -> tuple[bytes, int, secure.SecureChannel | None]:
        cla, ins, p1, p2, data, _ = secure.split_command(apdu)
        if ins in (0x22, 0x86) and self.document.chip_key is not None:
            if self._ca is None:
                private, curve = self.document.chip_key
                self._ca = pace_mod.CAChip(private, curve)
            return self._ca.process(cla, ins, p1, p2, data or b"")
        if ins == 0x88:
            return (*self._internal_authenticate(data or b""), None)
        return (*self._dispatch(apdu, secured=True), None)

    def _dispatch(self, apdu: bytes, secured: bool) -> tuple[bytes, int]:
        cla, ins, p1, p2, data, le = secure.split_command(apdu)
        if not self.extended_length and (len(data or b"") > 255 or (le or 0) > 256):
            return b"", SW_WRONG_LENGTH
        if ins == 0xA4:
            return self._select(p1, p2, data or b"", secured)
        if ins in (0x22, 0x86) and not secured:
            return self._pace_step(cla, ins, p1, p2, data or b"")
        if ins == 0x84:
            if not self.document.bac:
                return b"", SW_INS
            if le != 8:
                return b"", SW_WRONG_LENGTH
            self._challenge = os.urandom(8)
            return self._challenge, SW_OK
        if ins == 0x82:
            if not self.document.bac:
                return b"", SW_INS
            return self._external_authenticate(data or b"")
        if ins in (0xB0, 0xB1):
            if not secured:
                if self._file == _CARD_ACCESS and ins == 0xB0 and not self._app:
                    return self._read_card_access(p1, p2, le or 0)
                return b"", SW_SECURITY
            return self._read(ins, p1, p2, data or b"", le or 0)
        return b"", SW_INS

    def _pace_step(self, cla: int, ins: int, p1: int, p2: int, data: bytes) -> tuple[bytes, int]:
        doc = self.document
        if not doc.pace:
            return b"", SW_INS
        if self.failures >= self.max_failures:
            return b"", SW_BLOCKED
        if ins == 0x22:
            passwords = {1: doc.key.pace_secret()}
            if doc.can is not None:
                passwords[2] = doc.can_key.pace_secret()
            self._pace = pace_mod.PACEChip(passwords, doc.pace)
        if self._pace is None:
            return b"", SW_CONDITIONS
        answer, sw = self._pace.process(cla, ins, p1, p2, data)
        if self._pace.failed:
            self.failures += 1
            self._pace = None
        elif self._pace.channel is not None:
            self.failures = 0
            self._sm, self._pace = self._pace.channel, None
        return answer, sw

    def _read_card_access(self, p1: int, p2: int, le: int) -> tuple[bytes, int]:
        content = self.document.card_access or b""
        offset = (p1 << 8) | p2
        if offset > len(content):
            return b"", SW_OFFSET
        chunk = content[offset : offset + min(le, self.max_response)]
        return chunk, SW_EOF if len(chunk) < le else SW_OK

    def _select(self, p1: int, p2: int, data: bytes, secured: bool) -> tuple[bytes, int]:
        if p1 == 0x04:
            if data != EMRTD_AID:
                return b"", SW_NOT_FOUND
            if self.document.pace and not self.document.bac and not secured:
                # a PACE-only chip opens its application after PACE only
                return b"", SW_SECURITY
            self._app, self._file = True, None
            return b"", SW_OK
        if p1 in (0x00, 0x02) and len(data) == 2:
            fid = int.from_bytes(data, "big")
            if not self._app:  # the master file: EF.CardAccess (PACE chips) only
                if fid != _CARD_ACCESS or self.document.card_access is None:
                    return b"", SW_NOT_FOUND
                self._file = fid
                return b"", SW_OK
            if fid not in self.document.files:
                return b"", SW_NOT_FOUND
            if not secured:
                return b"", SW_SECURITY
            self._file = fid
            return b"", SW_OK
        return b"", SW_WRONG_P1P2

    def _external_authenticate(self, data: bytes) -> tuple[bytes, int]:
        if self.failures >= self.max_failures:
            return b"", SW_BLOCKED
        if self._challenge is None or not self._app:
            return b"", SW_SECURITY
        challenge, self._challenge = self._challenge, None
        try:
            answer, channel = secure.bac_card_response(self.document.key.seed(), challenge, data)
        except secure.AccessDenied:
            self.failures += 1
            return b"", self.wrong_key_sw
        self.failures = 0
        self._sm = channel
        return answer, SW_OK

    def _internal_authenticate(self, challenge: bytes) -> tuple[bytes, int]:
        key = self.document.aa_key
        if key is None:
            return b"", SW_INS
        if len(challenge) != 8:
            return b"", SW_WRONG_LENGTH
        return active.sign_challenge(key, challenge, self.document.aa_algorithm), SW_OK

    def _read(self, ins: int, p1: int, p2: int, data: bytes, le: int) -> tuple[bytes, int]:
        if ins == 0xB0:
            if p1 & 0x80:  # short file identifier
                fid = 0x0100 | (p1 & 0x1F) if p1 & 0x1F != 0x1E else 0x011E
                if fid not in self.document.files:
                    return b"", SW_NOT_FOUND
                self._file, offset = fid, p2
            else:
                offset = (p1 << 8) | p2
        else:
            try:
                offset_do = tlv.parse(data)
            except tlv.TLVError:
                return b"", SW_WRONG_P1P2
            if offset_do.tag != 0x54:
                return b"", SW_WRONG_P1P2
            offset = int.from_bytes(offset_do.value, "big")
        if self._file is None:
            return b"", SW_NOT_FOUND
        content = self.document.files[self._file]
        if offset > len(content):
            return b"", SW_OFFSET
        chunk = content[offset : offset + min(le, self.max_response)]
        sw = SW_EOF if len(chunk) < le and offset + len(chunk) == len(content) else SW_OK
        if ins == 0xB1:
            chunk = tlv.encode(0x53, chunk)
        return chunk, sw


def atr(historical: bytes = b"ICAOEMU1") -> bytes:
    """A contactless-style ATR (T=1) with its check byte."""
    body = bytes([0x80 | len(historical), 0x80, 0x01]) + historical
    tck = 0
    for b in body:
        tck ^= b
    return b"\x3b" + body + bytes([tck])


class VirtualCard:
    """Places an ``EmulatedChip`` on pcscd's vpcd reader: ``insert()`` connects to the vpcd
    socket (the reader sees a card), ``remove()`` disconnects (card removed).

    vpcd has one slot for the whole machine. Two processes inserting cards at once (a test
    run beside the demo, two daemons) would each read the other's card with their own key:
    the chip refuses BAC (seen once as ``card_access_denied`` in a demo run). So a card holds
    the slot, across processes, from insert to remove (an advisory lock on a file in the temp
    folder, released by the kernel if its process dies): an insert waits for the slot."""

    def __init__(self, chip: EmulatedChip, host: str = "127.0.0.1", port: int = VPCD_PORT) -> None:
        self.chip = chip
        self.host, self.port = host, port
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._slot: IO[str] | None = None

    # pcscd polls a vpcd slot's presence a few times a second: a card taken away and put back
    # faster than that would never be seen leaving. Real hands need longer anyway.
    AWAY_SECONDS = 1.2
    SLOT_TIMEOUT = 120.0  # how long an insert waits for another process's card to go

    def _take_slot(self, timeout: float) -> IO[str]:
        slot = open(Path(tempfile.gettempdir()) / f"rnp-vpcd-{self.port}.lock", "a+")  # noqa: SIM115
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(slot, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return slot
            except BlockingIOError:
                if time.monotonic() > deadline:
                    slot.close()
                    raise OSError("the virtual card reader holds another process's card") from None
                time.sleep(0.01)

    def insert(self, timeout: float = 5.0) -> None:
        """Take the slot (waiting while another card is in it), wait until the last card has
        been away long enough for pcscd to see it leave, then connect to vpcd (retrying until
        ``timeout`` while pcscd starts)."""
        slot = self._take_slot(self.SLOT_TIMEOUT)
        try:
            slot.seek(0)
            last_removed = float(slot.read().strip() or 0)
            away = last_removed + self.AWAY_SECONDS - time.time()
            if away > 0:
                time.sleep(away)
            deadline = time.monotonic() + timeout
            while True:
                try:
                    sock = socket.create_connection((self.host, self.port), timeout=1.0)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
        except BaseException:
            slot.close()
            raise
        self._slot = slot
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, args=(sock,), daemon=True)
        self._thread.start()

    def remove(self) -> None:
        """Disconnect: pcscd reports the card removed; the slot is free for the next card."""
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self.chip.reset()
        slot, self._slot = self._slot, None
        if slot is not None:
            slot.seek(0)
            slot.truncate()
            slot.write(f"{time.time():.6f}")
            slot.flush()
            slot.close()  # releases the lock

    def __enter__(self) -> VirtualCard:
        self.insert()
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def _serve(self, sock: socket.socket) -> None:
        try:
            while True:
                head = _recv(sock, 2)
                if head is None:
                    return
                (size,) = struct.unpack(">H", head)
                msg = _recv(sock, size)
                if msg is None:
                    return
                if size == 1:
                    if msg[0] == 4:
                        reply = atr()
                        sock.sendall(struct.pack(">H", len(reply)) + reply)
                    elif msg[0] in (0, 2):
                        self.chip.reset()
                    continue
                reply = self.chip.process(msg)
                sock.sendall(struct.pack(">H", len(reply)) + reply)
        except OSError:
            return


def _recv(sock: socket.socket, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        # vpcd writes the length and the message separately: acknowledge at once so that
        # Nagle's algorithm on its side does not hold the message for a delayed ACK (40 ms)
        if hasattr(socket, "TCP_QUICKACK"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        part = sock.recv(n - len(buf))
        if not part:
            return None
        buf += part
    return buf


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def _vpcd_loaded() -> bool:
    """pcscd runs with the vpcd reader: asked of pcscd itself (a port probe alone times out
    while a card waits in vpcd's accept queue), or vpcd's port when pcscd cannot be asked."""
    from devices import card

    try:
        if any("Virtual PCD" in name for name in card.readers()):
            return True
    except card.CardError:
        pass
    return _port_open(VPCD_PORT)


class PcscdUnavailable(DeviceError):
    """pcscd with vsmartcard's vpcd driver is not installed or did not start."""


def start_pcscd(timeout: float = 15.0) -> subprocess.Popen[bytes] | None:
    """Make sure the real PC/SC daemon runs with the vpcd virtual reader (for emulated cards).

    Returns the process started here (the caller stops it), or None when one already listens
    on vpcd's port. Raises PcscdUnavailable with what to install when it cannot start.
    """
    if _vpcd_loaded():
        return None
    exe = shutil.which("pcscd") or "/usr/sbin/pcscd"
    if not Path(exe).exists() or not Path(VPCD_DRIVER).exists():
        raise PcscdUnavailable(
            "pcscd and vsmartcard-vpcd are needed (apt-get install pcscd vsmartcard-vpcd; "
            "scripts/bootstrap.sh installs them when run as root)"
        )
    proc = subprocess.Popen(
        [exe, "--foreground", "--error"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + timeout
    while not _port_open(VPCD_PORT):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            err = proc.stderr.read().decode(errors="replace")[-500:] if proc.stderr else ""
            raise PcscdUnavailable(f"pcscd did not start: {err}")
        time.sleep(0.1)
    return proc
