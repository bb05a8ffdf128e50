"""ICAO 9303 Part 11 PACE (section 4.4) and Chip Authentication (section 6.2), both sides.

What is implemented:

* SecurityInfos (Part 11, 9.2) of EF.CardAccess and EF.DG14: PACEInfo, PACEDomainParameterInfo,
  ChipAuthenticationInfo, ChipAuthenticationPublicKeyInfo, ActiveAuthenticationInfo; any other
  SecurityInfo is kept by its OID in ``SecurityInfos.other``. Builders for both files
  (``card_access``, ``dg14``) serve the emulated chip.
* PACE version 2 with **Generic Mapping** over ECDH (standardized curves, ids 8-18) and DH
  (RFC 5114 groups, ids 0-2), with 3DES or AES-128/192/256 session keys: the terminal side
  (``pace``, what the kiosk runs) and the card side (``PACEChip``, what the emulator runs).
* Chip Authentication with ECDH or DH keys: version 1 (MSE:Set KAT, 3DES) and version 2
  (MSE:Set AT + GENERAL AUTHENTICATE), terminal side (``chip_authentication``) and card side
  (``CAChip``).

What is not: Integrated Mapping and Chip Authentication Mapping (``PACEInfo.supported`` is
False for them, and ``pace`` raises ``PACEUnsupported``), proprietary PACE domain parameters
(a PACEInfo without a standardized parameter id), Terminal Authentication, and constant-time
arithmetic (see ``devices.icao.ec``).

``tests/test_pace.py`` reproduces Part 11 Appendix G (ECDH) and Appendix H (DH) byte for byte.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from devices.exceptions import AccessDenied, ChipError
from devices.icao import ec, secure, tlv
from devices.icao.ec import Curve, DHGroup
from devices.icao.mrz import AccessKey, CANKey

Rng = Callable[[int], bytes]

ID_PACE = "0.4.0.127.0.7.2.2.4"
ID_CA = "0.4.0.127.0.7.2.2.3"
ID_PK = "0.4.0.127.0.7.2.2.1"
ID_PK_DH = ID_PK + ".1"
ID_PK_ECDH = ID_PK + ".2"
ID_AA = "2.23.136.1.1.5"
ID_EC_PUBLIC_KEY = "1.2.840.10045.2.1"
ID_DH_PUBLIC_NUMBER = "1.2.840.10046.2.1"  # ANSI X9.42 (p, g, q)
ID_DH_KEY_AGREEMENT = "1.2.840.113549.1.3.1"  # PKCS #3 (p, g)
ID_STANDARDIZED_DOMAIN = "0.4.0.127.0.7.1.2"  # BSI TR-03110-3: AlgorithmIdentifier by id

_MAPPINGS = {
    1: ("DH", "GM"),
    2: ("ECDH", "GM"),
    3: ("DH", "IM"),
    4: ("ECDH", "IM"),
    6: ("ECDH", "CAM"),
}
_CIPHERS = {1: ("3DES", 112), 2: ("AES", 128), 3: ("AES", 192), 4: ("AES", 256)}
_CA_AGREEMENTS = {1: "DH", 2: "ECDH"}

MRZ_PASSWORD, CAN_PASSWORD = 1, 2  # PACE password references (Part 11, 9.8.4.1 / Table)
ENC, MAC, PI = 1, 2, 3  # KDF counters


class PACEError(ChipError):
    """PACE or Chip Authentication data that is malformed or inconsistent (a SecurityInfo that
    does not parse, a point off the curve, a token or answer of the wrong shape)."""


class PACEUnsupported(ChipError):
    """The chip needs a PACE (or Chip Authentication) variant this kiosk does not run."""

    code = "pace_unsupported"


# ------------------------------------------------------------------------- SecurityInfos
def _split_oid(protocol: str, prefix: str) -> list[int] | None:
    if not protocol.startswith(prefix + "."):
        return None
    try:
        return [int(a) for a in protocol[len(prefix) + 1 :].split(".")]
    except ValueError:
        return None


class _Protocol:
    """What PACE and Chip Authentication protocol OIDs share: ``<family>.<agreement arc>.
    <cipher arc>``; subclasses say which family (``_family``) and how to name themselves."""

    protocol: str
    _family: ClassVar[str] = ""

    @property
    def _arcs(self) -> tuple[int, int]:
        arcs = _split_oid(self.protocol, self._family)
        assert arcs is not None
        return arcs[0], arcs[1]

    @property
    def cipher(self) -> str:
        """Secure messaging that follows: "3DES" or "AES"."""
        return _CIPHERS[self._arcs[1]][0]

    @property
    def key_bits(self) -> int:
        """112 (3DES), 128, 192 or 256 (AES)."""
        return _CIPHERS[self._arcs[1]][1]

    @property
    def _suite(self) -> str:
        return "3DES" if self.cipher == "3DES" else f"AES-{self.key_bits}"


@dataclass(frozen=True)
class PACEInfo(_Protocol):
    """One PACE variant a chip offers: protocol OID, version, standardized domain parameter id.
    Constructing one with an OID that is not a PACE protocol raises PACEError."""

    _family: ClassVar[str] = ID_PACE

    protocol: str
    version: int
    parameter_id: int | None = None

    def __post_init__(self) -> None:
        arcs = _split_oid(self.protocol, ID_PACE)
        if arcs is None or len(arcs) != 2 or arcs[0] not in _MAPPINGS or arcs[1] not in _CIPHERS:
            raise PACEError(f"{self.protocol} is not a PACE protocol")

    @property
    def agreement(self) -> str:
        """Key agreement: "ECDH" or "DH"."""
        return _MAPPINGS[self._arcs[0]][0]

    @property
    def mapping(self) -> str:
        """Mapping: "GM" (generic), "IM" (integrated), "CAM" (chip authentication mapping)."""
        return _MAPPINGS[self._arcs[0]][1]

    @property
    def name(self) -> str:
        """E.g. "PACE-ECDH-GM-AES-128" or "PACE-DH-GM-3DES"."""
        return f"PACE-{self.agreement}-{self.mapping}-{self._suite}"

    @property
    def domain(self) -> Curve | DHGroup | None:
        """The standardized domain parameters the parameter id names (None: none/unknown)."""
        if self.parameter_id is None:
            return None
        return ec.STANDARDIZED.get(self.parameter_id)

    @property
    def supported(self) -> bool:
        """Whether this kiosk runs the variant: version 2, Generic Mapping, standardized domain
        parameters of the right kind (a curve for ECDH, a MODP group for DH)."""
        domain = self.domain
        kind = Curve if self.agreement == "ECDH" else DHGroup
        return self.version == 2 and self.mapping == "GM" and isinstance(domain, kind)


@dataclass(frozen=True)
class PACEDomainParameterInfo:
    """Domain parameters a chip gives for PACE (explicit, or by standardized id). ``domain``
    None: parameters this kiosk does not know."""

    protocol: str
    domain: Curve | DHGroup | None
    parameter_id: int | None = None


@dataclass(frozen=True)
class ChipAuthenticationInfo(_Protocol):
    """One Chip Authentication variant of DG14: protocol OID, version, key id."""

    _family: ClassVar[str] = ID_CA

    protocol: str
    version: int
    key_id: int | None = None

    def __post_init__(self) -> None:
        arcs = _split_oid(self.protocol, ID_CA)
        if (
            arcs is None
            or len(arcs) != 2
            or arcs[0] not in _CA_AGREEMENTS
            or arcs[1] not in _CIPHERS
        ):
            raise PACEError(f"{self.protocol} is not a Chip Authentication protocol")

    @property
    def agreement(self) -> str:
        """Key agreement: "ECDH" or "DH"."""
        return _CA_AGREEMENTS[self._arcs[0]]

    @property
    def name(self) -> str:
        """E.g. "CA-ECDH-AES-128"."""
        return f"CA-{self.agreement}-{self._suite}"

    @property
    def supported(self) -> bool:
        """Version 1 or 2. (Documents announce AES with version 1 too; like version 2, AES
        runs through MSE:Set AT and GENERAL AUTHENTICATE.)"""
        return self.version in (1, 2)

    @property
    def uses_set_kat(self) -> bool:
        """Whether the terminal sends MSE:Set KAT (3DES, version 1) rather than MSE:Set AT +
        GENERAL AUTHENTICATE (AES, or version 2)."""
        return self.cipher == "3DES" and self.version == 1


@dataclass(frozen=True)
class ChipAuthenticationPublicKeyInfo:
    """The chip's static key agreement key of DG14. ``public_key`` is the encoded point (EC)
    or the public value padded to the size of p (DH); ``domain`` None when its parameters are
    not supported (an explicit curve outside ``ec.CURVES``, a DH group under 1024 bits)."""

    protocol: str
    domain: Curve | DHGroup | None
    public_key: bytes
    key_id: int | None = None

    @property
    def agreement(self) -> str:
        """Key agreement: "ECDH" or "DH"."""
        return "ECDH" if self.protocol == ID_PK_ECDH else "DH"


@dataclass(frozen=True)
class ActiveAuthenticationInfo:
    """DG14's note of the signature algorithm of Active Authentication (ECDSA keys)."""

    protocol: str
    version: int
    signature_algorithm: str


@dataclass
class SecurityInfos:
    """The SecurityInfos of EF.CardAccess or EF.DG14, by kind; ``other``: OIDs not understood."""

    pace: list[PACEInfo] = field(default_factory=list)
    pace_domain: list[PACEDomainParameterInfo] = field(default_factory=list)
    chip_authentication: list[ChipAuthenticationInfo] = field(default_factory=list)
    chip_authentication_keys: list[ChipAuthenticationPublicKeyInfo] = field(default_factory=list)
    active_authentication: list[ActiveAuthenticationInfo] = field(default_factory=list)
    other: list[str] = field(default_factory=list)


def _oid(node: tlv.TLV, what: str) -> str:
    if node.tag != 0x06:
        raise PACEError(f"{what}: OBJECT IDENTIFIER expected, tag {node.tag:X} found")
    try:
        return ec.oid_from_der(node.value)
    except ec.ECError as exc:
        raise PACEError(f"{what}: {exc}") from exc


def _integer(node: tlv.TLV, what: str) -> int:
    """An INTEGER read as unsigned (key ids such as 0xC3 are often encoded without 00)."""
    if node.tag != 0x02 or not node.value:
        raise PACEError(f"{what}: INTEGER expected")
    if len(node.value) > 1024:
        raise PACEError(f"{what}: INTEGER of {len(node.value)} bytes")
    return int.from_bytes(node.value, "big")


def _children(node: tlv.TLV, what: str, tag: int = 0x30) -> list[tlv.TLV]:
    if node.tag != tag:
        raise PACEError(f"{what}: tag {tag:X} expected, {node.tag:X} found")
    return node.children()


def _small(value: int, what: str) -> int:
    if value > 0xFFFF:
        raise PACEError(f"{what} {value} out of range")
    return value


def _dh_domain(params: tlv.TLV, pkcs3: bool) -> DHGroup | None:
    fields = _children(params, "DH domain parameters")
    if len(fields) < 2:
        raise PACEError("DH domain parameters: p and g expected")
    p = _integer(fields[0], "DH p")
    g = _integer(fields[1], "DH g")
    q = 0
    if not pkcs3:
        if len(fields) < 3:
            raise PACEError("X9.42 DH domain parameters: q missing")
        q = _integer(fields[2], "DH q")
    for known in ec.DH_GROUPS.values():
        if (known.p, known.g) == (p, g) and q in (0, known.q):
            return known
    if p.bit_length() < 1024 or not 1 < g < p - 1 or p % 2 == 0:
        return None
    return DHGroup("explicit", p, g, q)


def _algorithm_domain(algorithm: tlv.TLV) -> Curve | DHGroup | None:
    """Domain parameters of an AlgorithmIdentifier (EC, X9.42 / PKCS #3 DH, or BSI's
    standardizedDomainParameters); None when unknown or unsupported."""
    fields = _children(algorithm, "AlgorithmIdentifier")
    if not fields:
        raise PACEError("empty AlgorithmIdentifier")
    oid = _oid(fields[0], "algorithm")
    if len(fields) < 2:
        return None
    params = fields[1]
    if oid == ID_EC_PUBLIC_KEY:
        try:
            raw = tlv.encode(params.tag, params.value)
            return ec.curve_from_parameters(raw)
        except ec.ECError:
            return None
    if oid == ID_DH_PUBLIC_NUMBER:
        return _dh_domain(params, pkcs3=False)
    if oid == ID_DH_KEY_AGREEMENT:
        return _dh_domain(params, pkcs3=True)
    if oid == ID_STANDARDIZED_DOMAIN:
        return ec.STANDARDIZED.get(_integer(params, "standardized domain parameter id"))
    return None


def _public_key_info(
    protocol: str, spki: tlv.TLV, key_id: int | None
) -> ChipAuthenticationPublicKeyInfo:
    fields = _children(spki, "SubjectPublicKeyInfo")
    if len(fields) != 2 or fields[1].tag != 0x03:
        raise PACEError("SubjectPublicKeyInfo: algorithm and BIT STRING expected")
    domain = _algorithm_domain(fields[0])
    bits = fields[1].value
    if not bits or bits[0] != 0:
        raise PACEError("public key BIT STRING with unused bits")
    key = bits[1:]
    if protocol == ID_PK_ECDH:
        if isinstance(domain, DHGroup):
            raise PACEError("an ECDH key with DH domain parameters")
        if isinstance(domain, Curve):
            try:
                key = domain.encode(domain.decode(key))
            except ec.ECError as exc:
                raise PACEError(f"chip authentication public key: {exc}") from exc
    else:
        if isinstance(domain, Curve):
            raise PACEError("a DH key with elliptic-curve domain parameters")
        try:
            y = _integer(tlv.parse(key), "DH public key")
        except tlv.TLVError as exc:
            raise PACEError(f"DH public key: {exc}") from exc
        if domain is not None:
            if not 1 < y < domain.p - 1:
                raise PACEError("DH public key out of range")
            key = y.to_bytes(domain.size, "big")
    return ChipAuthenticationPublicKeyInfo(protocol, domain, key, key_id)


def _security_info(node: tlv.TLV, out: SecurityInfos) -> None:
    fields = _children(node, "SecurityInfo")
    if len(fields) < 2:
        raise PACEError("SecurityInfo: protocol and required data expected")
    protocol = _oid(fields[0], "SecurityInfo protocol")
    pace_arcs = _split_oid(protocol, ID_PACE)
    ca_arcs = _split_oid(protocol, ID_CA)
    optional = fields[2] if len(fields) > 2 else None
    if pace_arcs is not None and len(pace_arcs) == 2:
        version = _small(_integer(fields[1], "PACEInfo version"), "PACE version")
        pid = None if optional is None else _small(_integer(optional, "parameterId"), "id")
        try:
            out.pace.append(PACEInfo(protocol, version, pid))
        except PACEError:
            out.other.append(protocol)
    elif pace_arcs is not None and len(pace_arcs) == 1:
        pid = None if optional is None else _small(_integer(optional, "parameterId"), "id")
        out.pace_domain.append(PACEDomainParameterInfo(protocol, _algorithm_domain(fields[1]), pid))
    elif ca_arcs is not None and len(ca_arcs) == 2:
        version = _small(_integer(fields[1], "ChipAuthenticationInfo version"), "CA version")
        key_id = None if optional is None else _integer(optional, "keyId")
        try:
            out.chip_authentication.append(ChipAuthenticationInfo(protocol, version, key_id))
        except PACEError:
            out.other.append(protocol)
    elif protocol in (ID_PK_DH, ID_PK_ECDH):
        key_id = None if optional is None else _integer(optional, "keyId")
        out.chip_authentication_keys.append(_public_key_info(protocol, fields[1], key_id))
    elif protocol == ID_AA:
        version = _small(_integer(fields[1], "ActiveAuthenticationInfo version"), "AA version")
        if optional is None:
            raise PACEError("ActiveAuthenticationInfo without its signature algorithm")
        algorithm = _oid(optional, "signatureAlgorithm")
        out.active_authentication.append(ActiveAuthenticationInfo(protocol, version, algorithm))
    else:
        out.other.append(protocol)


def parse_security_infos(data: bytes) -> SecurityInfos:
    """SecurityInfos of EF.CardAccess (a bare SET) or EF.DG14 (tag 6E around the SET).
    Unknown SecurityInfos land in ``other``; malformed DER raises PACEError."""
    try:
        outer = tlv.parse(data)
        if outer.tag == 0x6E:
            outer = tlv.parse(outer.value)
        entries = _children(outer, "SecurityInfos", tag=0x31)
        out = SecurityInfos()
        for entry in entries:
            _security_info(entry, out)
    except tlv.TLVError as exc:
        raise PACEError(f"malformed SecurityInfos: {exc}") from exc
    return out


# --------------------------------------------------------------------- building (the chip)
def _der_int(value: int) -> bytes:
    return tlv.encode(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def _unsigned(value: int) -> bytes:
    """Minimal big-endian bytes of a non-negative number (key references: 84 01 C3)."""
    return value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")


def _der_oid(dotted: str) -> bytes:
    return tlv.encode(0x06, ec.oid_to_der(dotted))


def _der_set(items: Sequence[bytes]) -> bytes:
    return tlv.encode(0x31, b"".join(sorted(items)))  # DER: SET OF sorted by encoding


def _pace_info_der(info: PACEInfo) -> bytes:
    body = _der_oid(info.protocol) + _der_int(info.version)
    if info.parameter_id is not None:
        body += _der_int(info.parameter_id)
    return tlv.encode(0x30, body)


def card_access(infos: Sequence[PACEInfo]) -> bytes:
    """EF.CardAccess: the SET OF SecurityInfos with one PACEInfo per variant."""
    return _der_set([_pace_info_der(i) for i in infos])


def subject_public_key_info(
    public: ec.Point | int, domain: Curve | DHGroup, explicit: bool = False
) -> bytes:
    """SubjectPublicKeyInfo of an EC point (named curve, or explicit parameters) or a DH
    public value (X9.42 domain parameters p, g, q)."""
    if isinstance(domain, Curve):
        assert not isinstance(public, int)
        algorithm = _der_oid(ID_EC_PUBLIC_KEY) + ec.curve_parameters(domain, explicit)
        key = domain.encode(public)
    else:
        assert isinstance(public, int)
        params = tlv.encode(0x30, _der_int(domain.p) + _der_int(domain.g) + _der_int(domain.q))
        algorithm = _der_oid(ID_DH_PUBLIC_NUMBER) + params
        key = _der_int(public)
    return tlv.encode(0x30, tlv.encode(0x30, algorithm) + tlv.encode(0x03, b"\x00" + key))


def dg14(
    keys: Sequence[tuple[int, Curve | DHGroup]],
    aa_algorithm: str | None = None,
    *,
    cipher: str = "AES",
    key_bits: int = 128,
    explicit: bool = False,
) -> bytes:
    """EF.DG14 (tag 6E) with one ChipAuthenticationInfo + ChipAuthenticationPublicKeyInfo per
    (private key, domain) -- key ids 1, 2, ... when there are several -- and, when
    ``aa_algorithm`` is given, an ActiveAuthenticationInfo naming that signature algorithm.
    ``cipher``/``key_bits`` choose the CA variant (3DES: version 1, AES: version 2);
    ``explicit`` writes EC keys with explicit domain parameters, as many documents do."""
    cipher_arc = _cipher_arc(cipher, key_bits)
    items = []
    for index, (private, domain) in enumerate(keys, start=1):
        key_id = index if len(keys) > 1 else None
        ecdh = isinstance(domain, Curve)
        protocol = f"{ID_CA}.{2 if ecdh else 1}.{cipher_arc}"
        info = _der_oid(protocol) + _der_int(1 if cipher == "3DES" else 2)
        public: ec.Point | int
        if isinstance(domain, Curve):
            point = domain.multiply(private)
            assert point is not None
            public = point
        else:
            public = pow(domain.g, private, domain.p)
        pk = _der_oid(ID_PK_ECDH if ecdh else ID_PK_DH)
        pk += subject_public_key_info(public, domain, explicit)
        if key_id is not None:
            info += _der_int(key_id)
            pk += _der_int(key_id)
        items += [tlv.encode(0x30, info), tlv.encode(0x30, pk)]
    if aa_algorithm is not None:
        items.append(tlv.encode(0x30, _der_oid(ID_AA) + _der_int(1) + _der_oid(aa_algorithm)))
    return tlv.encode(0x6E, _der_set(items))


def _cipher_arc(cipher: str, key_bits: int) -> int:
    for arc, known in _CIPHERS.items():
        if known == (cipher, key_bits):
            return arc
    raise ValueError(f"no cipher {cipher}-{key_bits}")


# --------------------------------------------------------------------------- primitives
def kdf(secret: bytes, counter: int, cipher: str, key_bits: int) -> bytes:
    """Part 11, 9.7.1: key from a shared secret (counter 1 ENC, 2 MAC, 3 PACE password key).
    3DES: SHA-1, 16 bytes with DES parity; AES-128: SHA-1, 16 bytes; AES-192/256: SHA-256,
    24/32 bytes."""
    if (cipher, key_bits) == ("3DES", 112):
        return secure.derive_key(secret, counter)
    data = secret + counter.to_bytes(4, "big")
    if (cipher, key_bits) == ("AES", 128):
        return hashlib.sha1(data).digest()[:16]  # noqa: S324 - as specified
    if cipher == "AES" and key_bits in (192, 256):
        return hashlib.sha256(data).digest()[: key_bits // 8]
    raise ValueError(f"no key derivation for {cipher}-{key_bits}")


def _decrypt_nonce(k_pi: bytes, cipher: str, z: bytes) -> bytes:
    block = 16 if cipher == "AES" else 8
    if not z or len(z) % block:
        raise PACEError(f"encrypted nonce of {len(z)} bytes")
    if cipher == "AES":
        return secure.aes_decrypt(k_pi, z)
    return secure.decrypt(k_pi, z)


def _encrypt_nonce(k_pi: bytes, cipher: str, s: bytes) -> bytes:
    return secure.aes_encrypt(k_pi, s) if cipher == "AES" else secure.encrypt(k_pi, s)


def _token_mac(ks_mac: bytes, cipher: str, data: bytes) -> bytes:
    """Authentication token: AES-CMAC (unpadded input) or 3DES retail MAC (padded), 8 bytes."""
    if cipher == "AES":
        return secure.aes_cmac(ks_mac, data)[:8]
    return secure.mac(ks_mac, secure.pad(data))


def public_key_data(protocol: str, domain: Curve | DHGroup, public: bytes) -> bytes:
    """The public key data object (7F49) the tokens are computed over (Part 11, 4.4.3.4 and
    9.4): the protocol OID, then 86 (EC point, uncompressed) or 84 (DH value, unsigned)."""
    if isinstance(domain, Curve):
        body = tlv.encode(0x86, public)
    else:
        body = tlv.encode(0x84, _unsigned(int.from_bytes(public, "big")))
    return tlv.encode(0x7F49, _der_oid(protocol) + body)


def _scalar(order: int, rng: Rng) -> int:
    """A private key in [1, order - 1]."""
    size = (order.bit_length() + 7) // 8 + 8
    return int.from_bytes(rng(size), "big") % (order - 1) + 1


def _order(domain: Curve | DHGroup) -> int:
    if isinstance(domain, Curve):
        return domain.n
    return domain.q or domain.p - 1


def _public(domain: Curve | DHGroup, private: int, generator: ec.Point | int) -> bytes:
    """The encoded public key private * generator (EC) or generator ^ private (DH)."""
    if isinstance(domain, Curve):
        assert not isinstance(generator, int)
        point = domain.multiply(private, generator)
        if point is None:
            raise PACEError("public key at infinity")
        return domain.encode(point)
    assert isinstance(generator, int)
    return pow(generator, private, domain.p).to_bytes(domain.size, "big")


def _check_public(domain: Curve | DHGroup, data: bytes) -> ec.Point | int:
    """The other party's public key, validated: on the curve (EC); in (1, p - 1) and in the
    subgroup of order q (DH). PACEError otherwise."""
    if isinstance(domain, Curve):
        try:
            return domain.decode(data)
        except ec.ECError as exc:
            raise PACEError(f"public key: {exc}") from exc
    if not data or len(data) > domain.size:
        raise PACEError(f"DH public key of {len(data)} bytes")
    y = int.from_bytes(data, "big")
    if not 1 < y < domain.p - 1:
        raise PACEError("DH public key out of range")
    if domain.q and pow(y, domain.q, domain.p) != 1:
        raise PACEError("DH public key outside the prime-order subgroup")
    return y


def _canonical(domain: Curve | DHGroup, public: ec.Point | int) -> bytes:
    """A checked public key encoded as the tokens need it: uncompressed point, or the value
    padded to the size of p."""
    if isinstance(domain, Curve):
        assert not isinstance(public, int)
        return domain.encode(public)
    assert isinstance(public, int)
    return public.to_bytes(domain.size, "big")


def _agree(domain: Curve | DHGroup, private: int, public: ec.Point | int) -> ec.Point | int:
    """private * public (EC point) or public ^ private mod p (DH)."""
    if isinstance(domain, Curve):
        assert not isinstance(public, int)
        shared = domain.multiply(private, public)
        if shared is None:
            raise PACEError("key agreement gave the point at infinity")
        return shared
    assert isinstance(public, int)
    value = pow(public, private, domain.p)
    if value in (0, 1):
        raise PACEError("key agreement gave a degenerate value")
    return value


def _shared_bytes(domain: Curve | DHGroup, shared: ec.Point | int) -> bytes:
    """The shared secret: x-coordinate (ECDH) or the value (DH), padded to the field size."""
    if isinstance(shared, int):
        return shared.to_bytes(domain.size, "big")
    return shared[0].to_bytes(domain.size, "big")


def _map(
    domain: Curve | DHGroup, s: int, shared: ec.Point | int
) -> tuple[Curve | DHGroup, ec.Point | int]:
    """Generic Mapping: G' = s*G + H (ECDH) or g' = g^s * h mod p (DH)."""
    if isinstance(domain, Curve):
        assert not isinstance(shared, int)
        mapped = domain.add(domain.multiply(s), shared)
        if mapped is None:
            raise PACEError("mapped generator at infinity")
        return domain, mapped
    assert isinstance(shared, int)
    return domain, pow(domain.g, s, domain.p) * shared % domain.p


def _generator(domain: Curve | DHGroup) -> ec.Point | int:
    return domain.generator if isinstance(domain, Curve) else domain.g


def _dynamic(data: bytes, tag: int, what: str) -> bytes:
    """The value of ``tag`` inside dynamic authentication data 7C."""
    try:
        outer = tlv.parse(data)
        if outer.tag != 0x7C:
            raise PACEError(f"{what}: dynamic authentication data (7C) expected")
        for child in outer.children():
            if child.tag == tag:
                return child.value
    except tlv.TLVError as exc:
        raise PACEError(f"{what}: {exc}") from exc
    raise PACEError(f"{what}: data object {tag:02X} missing")


def _ga(data: bytes) -> bytes:
    return tlv.encode(0x7C, data)


def _ga_le(data: bytes) -> int:
    return 256 if len(data) <= 255 else 65536


# ----------------------------------------------------------------------- PACE: terminal
def _denied(sw: int) -> bool:
    return sw == 0x6300 or (sw & 0xFFF0) == 0x63C0


_REFUSED = "the card did not accept the access key (check the MRZ / CAN)"


def password_reference(key: AccessKey) -> int:
    """1 for an MRZ key, 2 for a CAN."""
    return CAN_PASSWORD if isinstance(key, CANKey) else MRZ_PASSWORD


def mse_set_at(info: PACEInfo, reference: int, with_parameter_id: bool = True) -> bytes:
    """MSE:Set AT for PACE (00 22 C1 A4): 80 protocol, 83 password, 84 domain parameter id."""
    data = tlv.encode(0x80, ec.oid_to_der(info.protocol)) + tlv.encode(0x83, bytes([reference]))
    if with_parameter_id and info.parameter_id is not None:
        data += tlv.encode(0x84, _unsigned(info.parameter_id))
    return secure.build_command(0x00, 0x22, 0xC1, 0xA4, data)


def pace(
    transmit: secure.Transmit,
    key: AccessKey,
    info: PACEInfo,
    *,
    rng: Rng = os.urandom,
    terminal_keys: tuple[int, int] | None = None,
    send_parameter_id: bool = True,
) -> secure.SecureChannel:
    """PACE, terminal side (Part 11, 4.4): MSE:Set AT, then four chained GENERAL AUTHENTICATE
    steps (encrypted nonce, mapping, key agreement, mutual authentication). Returns the new
    secure channel (SSC 0, the cipher of ``info``).

    ``terminal_keys`` fixes the terminal's mapping and key agreement private keys (tests);
    ``send_parameter_id`` False leaves data object 84 out of MSE:Set AT (it is only required
    when a chip offers several domain parameter sets).
    AccessDenied when the chip refuses the password or its token does not verify;
    PACEUnsupported for a variant this kiosk does not run; PACEError / ChipError otherwise."""
    if not info.supported:
        raise PACEUnsupported(f"this card needs {info.name}, which this kiosk does not support")
    domain = info.domain
    assert domain is not None
    cipher, bits = info.cipher, info.key_bits
    k_pi = kdf(key.pace_secret(), PI, cipher, bits)

    def step(apdu: bytes, what: str, last: bool = False) -> bytes:
        data, sw = transmit(apdu)
        if _denied(sw) or (last and sw in (0x6982, 0x6988)):
            raise AccessDenied(_REFUSED)
        if sw != 0x9000:
            raise ChipError(f"PACE {what} failed ({sw:04X})", sw)
        return data

    # MSE:Set AT; 63Cx here is a warning that carries the retry counter (BSI TR-03110-3
    # B.11.1): x > 0 tries left, so PACE goes on
    _, sw = transmit(mse_set_at(info, password_reference(key), send_parameter_id))
    if sw == 0x63C0 or sw == 0x6300:
        raise AccessDenied(_REFUSED)
    if sw != 0x9000 and (sw & 0xFFF0) != 0x63C0:
        raise ChipError(f"PACE MSE:Set AT refused ({sw:04X})", sw)

    def ga(body: bytes, last: bool = False) -> bytes:
        data = _ga(body)
        return secure.build_command(0x00 if last else 0x10, 0x86, 0, 0, data, _ga_le(data))

    # 1. encrypted nonce
    z = _dynamic(step(ga(b""), "step 1 (nonce)"), 0x80, "encrypted nonce")
    s = int.from_bytes(_decrypt_nonce(k_pi, cipher, z), "big")
    # 2. mapping
    order = _order(domain)
    map_key, agree_key = terminal_keys or (_scalar(order, rng), _scalar(order, rng))
    map_public = _public(domain, map_key, _generator(domain))
    answer = step(ga(tlv.encode(0x81, map_public)), "step 2 (mapping)")
    chip_map = _dynamic(answer, 0x82, "chip mapping data")
    if chip_map == map_public:
        raise PACEError("the chip returned the terminal's own mapping key")
    h = _agree(domain, map_key, _check_public(domain, chip_map))
    _, mapped = _map(domain, s, h)
    # 3. key agreement on the mapped generator
    public = _public(domain, agree_key, mapped)
    answer = step(ga(tlv.encode(0x83, public)), "step 3 (key agreement)")
    chip_public = _dynamic(answer, 0x84, "chip ephemeral public key")
    chip_point = _check_public(domain, chip_public)
    chip_public = _canonical(domain, chip_point)
    if chip_public == public:
        raise PACEError("the chip's ephemeral public key equals the terminal's")
    shared = _shared_bytes(domain, _agree(domain, agree_key, chip_point))
    ks_enc, ks_mac = kdf(shared, ENC, cipher, bits), kdf(shared, MAC, cipher, bits)
    # 4. mutual authentication
    token = _token_mac(ks_mac, cipher, public_key_data(info.protocol, domain, chip_public))
    answer = step(ga(tlv.encode(0x85, token), last=True), "step 4 (authentication)", last=True)
    chip_token = _dynamic(answer, 0x86, "chip authentication token")
    expected = _token_mac(ks_mac, cipher, public_key_data(info.protocol, domain, public))
    if not hmac.compare_digest(chip_token, expected):
        raise AccessDenied(_REFUSED)
    return secure.SecureChannel(ks_enc, ks_mac, 0, cipher)


# --------------------------------------------------------------------------- PACE: card
SW_OK = 0x9000
SW_WRONG_DATA = 0x6A80
SW_WRONG_P1P2 = 0x6A86
SW_SEQUENCE = 0x6985
SW_AUTH_FAILED = 0x6300
SW_INS = 0x6D00


class PACEChip:
    """PACE, card side: answers MSE:Set AT and the four GENERAL AUTHENTICATE steps like a
    chip. ``passwords`` maps a password reference (1 MRZ, 2 CAN) to its secret
    (``MRZKey.pace_secret()``, ``CANKey.pace_secret()``); ``infos`` the variants offered.

    After a successful step 4 ``channel`` holds the new secure channel (the response to that
    step is still plain); ``failed`` is set when the terminal's token did not verify (a wrong
    password). ``nonce`` and ``chip_keys`` (mapping, key agreement private keys) fix the
    random values (tests)."""

    def __init__(
        self,
        passwords: dict[int, bytes],
        infos: Sequence[PACEInfo],
        *,
        rng: Rng = os.urandom,
        nonce: bytes | None = None,
        chip_keys: tuple[int, int] | None = None,
    ) -> None:
        self.passwords = dict(passwords)
        self.infos = list(infos)
        self.rng = rng
        self.fixed_nonce = nonce
        self.chip_keys = chip_keys
        self.channel: secure.SecureChannel | None = None
        self.failed = False
        self.reset()

    def reset(self) -> None:
        """Forget any protocol in progress (and its outcome)."""
        self.channel = None
        self.failed = False
        self._info: PACEInfo | None = None
        self._secret = b""
        self._step = 0
        self._s = 0
        self._mapped: ec.Point | int | None = None
        self._terminal_public = b""
        self._chip_public = b""
        self._keys = (b"", b"")

    def _abort(self, sw: int) -> tuple[bytes, int]:
        """A protocol error ends the run: the terminal has to start again with MSE:Set AT."""
        self.reset()
        return b"", sw

    def _select(self, data: bytes) -> tuple[bytes, int]:
        try:
            objects = {o.tag: o.value for o in tlv.parse_all(data)}
            protocol = ec.oid_from_der(objects[0x80])
            reference = objects[0x83]
            pid = int.from_bytes(objects[0x84], "big") if 0x84 in objects else None
        except (tlv.TLVError, ec.ECError, KeyError):
            return b"", SW_WRONG_DATA
        if len(reference) != 1 or reference[0] not in self.passwords:
            return b"", SW_WRONG_DATA
        offered = [
            i
            for i in self.infos
            if i.protocol == protocol and i.supported and pid in (None, i.parameter_id)
        ]
        if not offered:
            return b"", SW_WRONG_DATA
        self.reset()
        self._info = offered[0]
        self._secret = self.passwords[reference[0]]
        self._step = 1
        return b"", SW_OK

    def process(self, cla: int, ins: int, p1: int, p2: int, data: bytes) -> tuple[bytes, int]:
        """Answer one plain command: (response data, status word)."""
        if ins == 0x22:
            if (p1, p2) != (0xC1, 0xA4):
                return b"", SW_WRONG_P1P2
            return self._select(data)
        if ins != 0x86:
            return b"", SW_INS
        info = self._info
        if info is None or self._step == 0 or self.channel is not None:
            return b"", SW_SEQUENCE
        if (p1, p2) != (0, 0):
            return self._abort(SW_WRONG_P1P2)
        chained = bool(cla & 0x10)
        if chained != (self._step < 4):
            return self._abort(SW_SEQUENCE)
        try:
            return self._general_authenticate(info, data)
        except (PACEError, tlv.TLVError, ec.ECError):
            return self._abort(SW_WRONG_DATA)

    def _general_authenticate(self, info: PACEInfo, data: bytes) -> tuple[bytes, int]:
        domain = info.domain
        assert domain is not None
        cipher, bits = info.cipher, info.key_bits
        expected = {1: None, 2: 0x81, 3: 0x83, 4: 0x85}[self._step]
        outer = tlv.parse(data)
        if outer.tag != 0x7C:
            raise PACEError("7C expected")
        if expected is None:
            if outer.value:
                raise PACEError("step 1 carries no data")
            size = 16 if cipher == "3DES" or bits == 128 else 32
            s = self.fixed_nonce or self.rng(size)
            self._s = int.from_bytes(s, "big")
            k_pi = kdf(self._secret, PI, cipher, bits)
            self._step = 2
            return _ga(tlv.encode(0x80, _encrypt_nonce(k_pi, cipher, s))), SW_OK
        value = _dynamic(data, expected, "terminal data")
        order = _order(domain)
        if self._step == 2:
            map_key = self.chip_keys[0] if self.chip_keys else _scalar(order, self.rng)
            terminal_map = _check_public(domain, value)
            chip_map = _public(domain, map_key, _generator(domain))
            _, self._mapped = _map(domain, self._s, _agree(domain, map_key, terminal_map))
            self._step = 3
            return _ga(tlv.encode(0x82, chip_map)), SW_OK
        if self._step == 3:
            assert self._mapped is not None
            terminal_point = _check_public(domain, value)
            self._terminal_public = _canonical(domain, terminal_point)
            agree_key = self.chip_keys[1] if self.chip_keys else _scalar(order, self.rng)
            public = _public(domain, agree_key, self._mapped)
            while public == self._terminal_public:  # the spec requires the keys to differ
                agree_key = _scalar(order, self.rng)
                public = _public(domain, agree_key, self._mapped)
            self._chip_public = public
            shared = _shared_bytes(domain, _agree(domain, agree_key, terminal_point))
            self._keys = (kdf(shared, ENC, cipher, bits), kdf(shared, MAC, cipher, bits))
            self._step = 4
            return _ga(tlv.encode(0x84, public)), SW_OK
        ks_enc, ks_mac = self._keys
        mine = _token_mac(ks_mac, cipher, public_key_data(info.protocol, domain, self._chip_public))
        if not hmac.compare_digest(value, mine):
            self.reset()
            self.failed = True
            return b"", SW_AUTH_FAILED
        token = _token_mac(
            ks_mac, cipher, public_key_data(info.protocol, domain, self._terminal_public)
        )
        self.channel = secure.SecureChannel(ks_enc, ks_mac, 0, cipher)
        self._step = 0
        return _ga(tlv.encode(0x86, token)), SW_OK


# -------------------------------------------------------------- Chip Authentication
def _ca_choice(
    infos: SecurityInfos,
) -> tuple[ChipAuthenticationInfo, ChipAuthenticationPublicKeyInfo] | None:
    """The best (AES first, longest key) supported CA variant with a usable key. Without any
    ChipAuthenticationInfo, a lone key implies version 1 with 3DES (Part 11, 6.2.1)."""
    offered = list(infos.chip_authentication)
    if not offered:
        for key in infos.chip_authentication_keys:
            arc = 2 if key.agreement == "ECDH" else 1
            offered.append(ChipAuthenticationInfo(f"{ID_CA}.{arc}.1", 1, key.key_id))
    ranked = sorted(
        (i for i in offered if i.supported),
        key=lambda i: (
            0 if i.cipher == "AES" else 1,
            -i.key_bits,
            0 if i.agreement == "ECDH" else 1,
            0 if i.version == 2 else 1,
        ),
    )
    for info in ranked:
        for key in infos.chip_authentication_keys:
            if key.agreement != info.agreement or key.domain is None:
                continue
            if info.key_id is None or key.key_id is None or info.key_id == key.key_id:
                return info, key
    return None


def chip_authentication(
    transmit: secure.Transmit,
    infos: SecurityInfos,
    *,
    rng: Rng = os.urandom,
    terminal_key: int | None = None,
) -> secure.SecureChannel:
    """Chip Authentication, terminal side (Part 11, 6.2), through the CURRENT secure channel
    (``transmit`` protects and checks each APDU). 3DES version 1: MSE:Set KAT with the
    terminal's ephemeral key; AES (either version) and version 2: MSE:Set AT then GENERAL
    AUTHENTICATE. DG14 without ChipAuthenticationInfo: 3DES version 1. Returns the new
    channel (session keys from the shared secret with DG14's static key, SSC 0); the caller
    swaps it in for the next command, whose answer proves the chip holds the private key.

    PACEUnsupported when DG14 offers no variant or key this kiosk runs; ChipError when the
    chip refuses; PACEError for malformed answers. ``terminal_key`` fixes the ephemeral
    private key (tests)."""
    choice = _ca_choice(infos)
    if choice is None:
        names = ", ".join(i.name for i in infos.chip_authentication) or "no usable key"
        raise PACEUnsupported(f"chip authentication ({names}) is not supported by this kiosk")
    info, key = choice
    domain = key.domain
    assert domain is not None
    chip_public = _check_public(domain, key.public_key)
    private = terminal_key or _scalar(_order(domain), rng)
    public = _public(domain, private, _generator(domain))
    key_ref = b"" if key.key_id is None else tlv.encode(0x84, _unsigned(key.key_id))
    if info.uses_set_kat:
        data = tlv.encode(0x91, public) + key_ref
        _, sw = transmit(secure.build_command(0x00, 0x22, 0x41, 0xA6, data))
        if sw != 0x9000:
            raise ChipError(f"chip authentication MSE:Set KAT refused ({sw:04X})", sw)
    else:
        data = tlv.encode(0x80, ec.oid_to_der(info.protocol)) + key_ref
        _, sw = transmit(secure.build_command(0x00, 0x22, 0x41, 0xA4, data))
        if sw != 0x9000:
            raise ChipError(f"chip authentication MSE:Set AT refused ({sw:04X})", sw)
        body = _ga(tlv.encode(0x80, public))
        answer, sw = transmit(secure.build_command(0x00, 0x86, 0, 0, body, _ga_le(body)))
        if sw != 0x9000:
            raise ChipError(f"chip authentication GENERAL AUTHENTICATE refused ({sw:04X})", sw)
        try:
            if tlv.parse(answer).tag != 0x7C:
                raise PACEError("chip authentication: dynamic authentication data expected")
        except tlv.TLVError as exc:
            raise PACEError(f"chip authentication answer: {exc}") from exc
    shared = _shared_bytes(domain, _agree(domain, private, chip_public))
    cipher, bits = info.cipher, info.key_bits
    return secure.SecureChannel(
        kdf(shared, ENC, cipher, bits), kdf(shared, MAC, cipher, bits), 0, cipher
    )


class CAChip:
    """Chip Authentication, card side: the chip's static private key on ``domain`` and the
    variant it announces in DG14 (default: version 2, AES-128, ECDH or DH by the domain).

    ``process`` answers MSE:Set KAT, MSE:Set AT and GENERAL AUTHENTICATE, returning
    (data, status word, new channel or None): the new channel applies AFTER this response
    has been protected with the old one."""

    def __init__(
        self,
        private_key: int,
        domain: Curve | DHGroup,
        info: ChipAuthenticationInfo | None = None,
    ) -> None:
        self.private_key = private_key
        self.domain = domain
        arc = 2 if isinstance(domain, Curve) else 1
        self.info = info or ChipAuthenticationInfo(f"{ID_CA}.{arc}.2", 2)
        self._selected = False

    def _channel(self, terminal_public: bytes) -> secure.SecureChannel:
        point = _check_public(self.domain, terminal_public)
        shared = _shared_bytes(self.domain, _agree(self.domain, self.private_key, point))
        cipher, bits = self.info.cipher, self.info.key_bits
        return secure.SecureChannel(
            kdf(shared, ENC, cipher, bits), kdf(shared, MAC, cipher, bits), 0, cipher
        )

    def process(
        self, cla: int, ins: int, p1: int, p2: int, data: bytes
    ) -> tuple[bytes, int, secure.SecureChannel | None]:
        """Answer one (already unwrapped) command."""
        try:
            if ins == 0x22 and (p1, p2) == (0x41, 0xA6):
                objects = {o.tag: o.value for o in tlv.parse_all(data)}
                if 0x91 not in objects:
                    return b"", SW_WRONG_DATA, None
                return b"", SW_OK, self._channel(objects[0x91])
            if ins == 0x22 and (p1, p2) == (0x41, 0xA4):
                objects = {o.tag: o.value for o in tlv.parse_all(data)}
                if 0x80 not in objects or ec.oid_from_der(objects[0x80]) != self.info.protocol:
                    return b"", SW_WRONG_DATA, None
                self._selected = True
                return b"", SW_OK, None
            if ins == 0x22:
                return b"", SW_WRONG_P1P2, None
            if ins == 0x86:
                if not self._selected:
                    return b"", SW_SEQUENCE, None
                self._selected = False
                if (p1, p2) != (0, 0):
                    return b"", SW_WRONG_P1P2, None
                channel = self._channel(_dynamic(data, 0x80, "terminal ephemeral key"))
                return _ga(b""), SW_OK, channel
        except (PACEError, tlv.TLVError, ec.ECError):
            return b"", SW_WRONG_DATA, None
        return b"", SW_INS, None
