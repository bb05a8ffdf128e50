"""ICAO 9303 Part 11, section 6.1: Active Authentication (chip clone detection), both sides.

The chip proves that it holds the private key whose public half is in DG15 (itself covered
by EF.SOD, so passive authentication vouches for it) by signing a random challenge of the
terminal's with INTERNAL AUTHENTICATE.

Implemented:

- ``parse_dg15``: DG15 (tag 6F) holding a SubjectPublicKeyInfo: RSA (rsaEncryption) or EC
  (id-ecPublicKey) with a namedCurve OID or explicit ECParameters, mapped to a known curve by
  ``devices.icao.ec``.
- Terminal side, ``active_authentication``: INTERNAL AUTHENTICATE through the caller's
  (secure-messaging) transmit and verification of the answer:

  * RSA: ISO/IEC 9796-2 digital signature scheme 1 (message recovery), partial recovery,
    trailer BC (SHA-1 implied) or an explicit trailer xxCC naming the hash by its
    ISO/IEC 10118-3 identifier; the alternative signature n - s is accepted too;
  * ECDSA: the plain r || s format of BSI TR-03111, hash from DG14's
    ActiveAuthenticationInfo (``signature_algorithm``); a DER-encoded signature, sent by
    some non-conforming chips, is accepted as well.

- Card side, for the emulated chip: ``generate_key`` (also ``active_authentication_key``),
  ``dg15`` and ``sign_challenge`` (what a real chip answers).

EC keys on curves that ``cryptography`` lacks (brainpoolP192r1, P224r1, P320r1) are verified
with the plain arithmetic of ``devices.icao.ec``.

Not implemented: ISO/IEC 9796-2 schemes 2 and 3 (PSS-like, not used by eMRTDs), total
message recovery (an AA answer always leaves the challenge to the verifier), DSA keys,
Whirlpool and RIPEMD-128 trailers, ecdsa-plain-SHA3-224 (all give "unknown"), EC keys on
curves that ``devices.icao.ec`` does not know, and binary-field curves. RSA moduli
whose length is not a multiple of 8 are handled with a representative of floor(k / 8) bytes
(real eMRTD keys are 1024 to 4096 bits). The card side's RSA and ECDSA are not side-channel
hardened: fine for an emulator.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from typing import Literal, overload

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric import utils as asym_utils

from devices.exceptions import ChipError
from devices.icao import ec as curves
from devices.icao import secure, tlv


class ActiveAuthenticationError(ChipError, ValueError):
    """DG15 or the chip's answer is malformed."""


class UnsupportedActiveAuthentication(ActiveAuthenticationError):
    """Well formed, but an algorithm (key type, curve, hash) this terminal cannot check."""


RSA_ENCRYPTION = "1.2.840.113549.1.1.1"
EC_PUBLIC_KEY = "1.2.840.10045.2.1"

# BSI TR-03111 ecdsa-plain-signatures (0.4.0.127.0.7.1.1.4.1) and ANSI X9.62 ecdsa-with-*
ECDSA_PLAIN = "0.4.0.127.0.7.1.1.4.1"
ECDSA_PLAIN_SHA1 = ECDSA_PLAIN + ".1"
ECDSA_PLAIN_SHA224 = ECDSA_PLAIN + ".2"
ECDSA_PLAIN_SHA256 = ECDSA_PLAIN + ".3"
ECDSA_PLAIN_SHA384 = ECDSA_PLAIN + ".4"
ECDSA_PLAIN_SHA512 = ECDSA_PLAIN + ".5"
ECDSA_PLAIN_RIPEMD160 = ECDSA_PLAIN + ".6"
SIGNATURE_ALGORITHMS: dict[str, str] = {  # OID -> hashlib name
    ECDSA_PLAIN_SHA1: "sha1",
    ECDSA_PLAIN_SHA224: "sha224",
    ECDSA_PLAIN_SHA256: "sha256",
    ECDSA_PLAIN_SHA384: "sha384",
    ECDSA_PLAIN_SHA512: "sha512",
    ECDSA_PLAIN_RIPEMD160: "ripemd160",
    ECDSA_PLAIN + ".9": "sha3_256",
    ECDSA_PLAIN + ".10": "sha3_384",
    ECDSA_PLAIN + ".11": "sha3_512",
    "1.2.840.10045.4.1": "sha1",
    "1.2.840.10045.4.3.1": "sha224",
    "1.2.840.10045.4.3.2": "sha256",
    "1.2.840.10045.4.3.3": "sha384",
    "1.2.840.10045.4.3.4": "sha512",
}

# ISO/IEC 9796-2 explicit trailer xxCC: hash identifiers of ISO/IEC 10118-3 (as in Bouncy
# Castle's ISOTrailers and Botan's ieee1363_hash_id)
ISO9796_HASH_IDS: dict[int, str] = {
    0x31: "ripemd160",
    0x33: "sha1",
    0x34: "sha256",
    0x35: "sha512",
    0x36: "sha384",
    0x38: "sha224",
}
_TRAILER_IMPLICIT = 0xBC
_TRAILER_EXPLICIT = 0xCC

# cryptography curves by name (the names devices.icao.ec gives)
_CRYPTO_CURVES: dict[str, type[ec.EllipticCurve]] = {
    c.name: c
    for c in (
        ec.SECP192R1,
        ec.SECP224R1,
        ec.SECP256R1,
        ec.SECP384R1,
        ec.SECP521R1,
        ec.BrainpoolP256R1,
        ec.BrainpoolP384R1,
        ec.BrainpoolP512R1,
    )
}
# ECDSA only sees the digest: any hash of the same size stands in for Prehashed
_PREHASHED: dict[int, type[hashes.HashAlgorithm]] = {
    20: hashes.SHA1,
    28: hashes.SHA224,
    32: hashes.SHA256,
    48: hashes.SHA384,
    64: hashes.SHA512,
}


# ------------------------------------------------------------------------------- DG15
@dataclass(frozen=True)
class ActiveAuthenticationKey:
    """The chip's Active Authentication public key, from DG15. ``public_key`` is None for an
    EC key on a curve the ``cryptography`` package lacks (brainpoolP192r1, P224r1, P320r1):
    those are checked with the arithmetic of ``devices.icao.ec``."""

    algorithm: Literal["rsa", "ec"]
    public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey | None
    curve: curves.Curve | None = None  # EC keys: the domain parameters
    point: curves.Point | None = None  # EC keys: the public point
    explicit_parameters: bool = False  # EC keys given with explicit ECParameters

    @property
    def bits(self) -> int:
        """RSA modulus length, or the bit length of the EC group order."""
        if self.curve is not None:
            return self.curve.n.bit_length()
        return self.public_key.key_size if self.public_key is not None else 0

    @property
    def signature_length(self) -> int:
        """Length of the chip's answer: the modulus length, or 2 x the order length."""
        if self.algorithm == "rsa":
            return (self.bits + 7) // 8
        return 2 * ((self.bits + 7) // 8)

    @property
    def description(self) -> str:
        """For operators: "RSA-1024", "ECDSA brainpoolP256r1"."""
        if self.curve is not None:
            return f"ECDSA {self.curve.name}"
        return f"RSA-{self.bits}"


def parse_dg15(data: bytes) -> ActiveAuthenticationKey:
    """DG15: the Active Authentication public key. ``UnsupportedActiveAuthentication`` for a
    key type this module cannot check, ``ActiveAuthenticationError`` for anything malformed
    or on a curve ``devices.icao.ec`` does not know (never IndexError and the like)."""
    try:
        return _parse_dg15(data)
    except ActiveAuthenticationError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
        raise ActiveAuthenticationError(f"DG15: {exc}") from exc


def _der_integer(obj: tlv.TLV) -> int:
    if obj.tag != 0x02 or not obj.value or obj.value[0] & 0x80:
        raise ActiveAuthenticationError("DG15: a positive INTEGER expected")
    return int.from_bytes(obj.value, "big")


def _parse_dg15(data: bytes) -> ActiveAuthenticationKey:
    outer = tlv.parse(data)
    if outer.tag != 0x6F:
        raise ActiveAuthenticationError("DG15 must start with tag 6F")
    spki = tlv.parse(outer.value)
    parts = spki.children() if spki.tag == 0x30 else []
    if [p.tag for p in parts] != [0x30, 0x03]:
        raise ActiveAuthenticationError("DG15 does not hold a SubjectPublicKeyInfo")
    algorithm = parts[0].children()
    if not 1 <= len(algorithm) <= 2 or algorithm[0].tag != 0x06:
        raise ActiveAuthenticationError("DG15: malformed AlgorithmIdentifier")
    oid = curves.oid_from_der(algorithm[0].value)
    bit_string = parts[1].value
    if not bit_string or bit_string[0] != 0:
        raise ActiveAuthenticationError("DG15: public key BIT STRING has unused bits")
    if oid == RSA_ENCRYPTION:
        rsa_key = tlv.parse(bit_string[1:])
        fields = rsa_key.children() if rsa_key.tag == 0x30 else []
        if len(fields) != 2:
            raise ActiveAuthenticationError("DG15: malformed RSAPublicKey")
        n, e = _der_integer(fields[0]), _der_integer(fields[1])
        if n.bit_length() < 512 or not n & 1:
            raise ActiveAuthenticationError("DG15: RSA modulus is too short or even")
        if not 3 <= e < n or not e & 1:
            raise ActiveAuthenticationError("DG15: RSA public exponent is invalid")
        return ActiveAuthenticationKey("rsa", rsa.RSAPublicNumbers(e, n).public_key())
    if oid == EC_PUBLIC_KEY:
        if len(algorithm) != 2:
            raise ActiveAuthenticationError("DG15: EC key without domain parameters")
        parameters = algorithm[1]
        curve = curves.curve_from_parameters(tlv.encode(parameters.tag, parameters.value))
        point = curves.decode_point(curve, bit_string[1:])
        crypto_curve = _CRYPTO_CURVES.get(curve.name)
        key = None
        if crypto_curve is not None:
            encoded = curves.encode_point(curve, point)
            key = ec.EllipticCurvePublicKey.from_encoded_point(crypto_curve(), encoded)
        return ActiveAuthenticationKey("ec", key, curve, point, parameters.tag == 0x30)
    raise UnsupportedActiveAuthentication(f"DG15: unsupported public key algorithm {oid}")


# ------------------------------------------------------------------ ISO/IEC 9796-2
@dataclass(frozen=True)
class MessageRecovery:
    """An opened ISO/IEC 9796-2 scheme 1 signature."""

    recovered: bytes  # M1, the recoverable part of the message
    digest: bytes  # H(M1 || M2) as the signer computed it
    hash_name: str  # hashlib name
    partial: bool  # partial recovery: a non-recoverable M2 follows M1
    explicit_trailer: bool  # trailer xxCC (hash named) rather than BC (hash implied)


def _digest_size(name: str) -> int:
    try:
        return hashlib.new(name).digest_size
    except ValueError as exc:  # e.g. ripemd160 on an OpenSSL without it
        raise UnsupportedActiveAuthentication(f"hash {name} is not available") from exc


def open_iso9796_2(
    n: int, e: int, signature: bytes, implicit_hash: str = "sha1"
) -> MessageRecovery:
    """Open an ISO/IEC 9796-2 digital signature scheme 1 signature with the RSA public key
    (n, e): the recovered message M1 and the signed digest, not yet compared with anything.
    ``implicit_hash`` is the hash trailer BC implies (SHA-1 for eMRTDs).

    ActiveAuthenticationError when the signature does not open to a well-formed message
    representative (wrong key, corrupted answer); UnsupportedActiveAuthentication for a
    trailer naming a hash this module lacks."""
    k = n.bit_length()
    size = k // 8  # the representative: its top bit is 0, so it stays below n
    if size < 4:
        raise ActiveAuthenticationError(f"RSA-{k} is too short for ISO/IEC 9796-2")
    if not signature or len(signature) > (k + 7) // 8:
        raise ActiveAuthenticationError(f"signature of {len(signature)} bytes for RSA-{k}")
    s = int.from_bytes(signature, "big")
    if not 0 < s < n:
        raise ActiveAuthenticationError("signature is not below the modulus")
    j = pow(s, e, n)
    for candidate in (j, n - j):  # 9796-2: the signer may have sent min(s, n - s)
        if candidate >> (8 * size):
            continue
        f = candidate.to_bytes(size, "big")
        if f[0] & 0xC0 == 0x40 and f[-1] & 0x0F == 0x0C:
            break
    else:
        raise ActiveAuthenticationError("signature does not open to an ISO/IEC 9796-2 message")
    if f[-1] == _TRAILER_IMPLICIT:
        hash_name, t = implicit_hash, 1
    elif f[-1] == _TRAILER_EXPLICIT and len(f) > 1:
        if f[-2] not in ISO9796_HASH_IDS:
            raise UnsupportedActiveAuthentication(f"ISO/IEC 9796-2 hash identifier {f[-2]:02X}")
        hash_name, t = ISO9796_HASH_IDS[f[-2]], 2
    else:
        raise ActiveAuthenticationError(f"unknown ISO/IEC 9796-2 trailer {f[-1]:02X}")
    h = _digest_size(hash_name)
    if f[0] & 0x10:
        raise ActiveAuthenticationError("ISO/IEC 9796-2 header is malformed")
    start = 1
    if f[0] & 0x0F == 0x0B:  # padding: nibbles B ... B, then A
        while start < len(f) and f[start] == 0xBB:
            start += 1
        if start == len(f) or f[start] != 0xBA:
            raise ActiveAuthenticationError("ISO/IEC 9796-2 padding is malformed")
        start += 1
    elif f[0] & 0x0F != 0x0A:
        raise ActiveAuthenticationError("ISO/IEC 9796-2 padding is malformed")
    end = len(f) - t - h
    if end <= start:
        raise ActiveAuthenticationError("ISO/IEC 9796-2 message holds no recoverable part")
    return MessageRecovery(f[start:end], f[end : len(f) - t], hash_name, bool(f[0] & 0x20), t == 2)


def sign_iso9796_2(
    private_key: rsa.RSAPrivateKey,
    m1: bytes,
    m2: bytes,
    hash_name: str = "sha1",
    explicit_trailer: bool = False,
) -> bytes:
    """ISO/IEC 9796-2 scheme 1 with partial recovery, the representative filled by ``m1``
    (header 6A, no padding): ``m1`` must be exactly ``iso9796_2_capacity`` bytes."""
    numbers = private_key.private_numbers()
    n = numbers.public_numbers.n
    capacity = iso9796_2_capacity(n.bit_length(), hash_name, explicit_trailer)
    if len(m1) != capacity:
        raise ValueError(f"M1 must be {capacity} bytes for this key and hash")
    digest = hashlib.new(hash_name, m1 + m2).digest()
    if explicit_trailer:
        ids = [i for i, name in ISO9796_HASH_IDS.items() if name == hash_name]
        if not ids:
            raise ValueError(f"{hash_name} has no ISO/IEC 10118-3 hash identifier")
        trailer = bytes([ids[0], _TRAILER_EXPLICIT])
    else:
        trailer = bytes([_TRAILER_IMPLICIT])
    f = int.from_bytes(b"\x6a" + m1 + digest + trailer, "big")
    return pow(f, numbers.d, n).to_bytes((n.bit_length() + 7) // 8, "big")


def iso9796_2_capacity(bits: int, hash_name: str = "sha1", explicit_trailer: bool = False) -> int:
    """Bytes of M1 that fill the representative of an RSA-``bits`` signature (ICAO 9303-11
    6.1: 106 for RSA-1024 with SHA-1 and trailer BC)."""
    capacity = bits // 8 - 1 - hashlib.new(hash_name).digest_size - (2 if explicit_trailer else 1)
    if capacity < 1:
        raise ValueError(f"RSA-{bits} is too short for {hash_name}")
    return capacity


# -------------------------------------------------------------------- terminal side
Status = Literal["passed", "failed", "unknown"]


@dataclass(frozen=True)
class ActiveAuthenticationResult:
    """``passed`` (the chip holds DG15's private key), ``failed`` (it refused, or its
    signature does not verify: a clone), or ``unknown`` (not checkable here), with why."""

    status: Status
    reason: str = ""
    algorithm: str = ""  # for operators: "RSA-1024 ISO/IEC 9796-2 SHA1 trailer BC", ...

    @property
    def passed(self) -> bool:
        """True only for a verified signature."""
        return self.status == "passed"


def active_authentication(
    transmit: secure.Transmit,
    dg15: bytes,
    signature_algorithm: str | None = None,
    *,
    challenge: bytes | None = None,
) -> ActiveAuthenticationResult:
    """Active Authentication, terminal side: INTERNAL AUTHENTICATE with an 8-byte random
    challenge (``challenge`` for tests) through ``transmit`` (the secure-messaging one),
    then verify the answer against DG15's key. ``signature_algorithm`` is the OID of DG14's
    ActiveAuthenticationInfo, required for ECDSA keys.

    Never raises for a bad chip or document; only ``transmit``'s own errors (CardError:
    card removed, secure messaging broken) propagate. ValueError for a challenge that is not
    8 bytes."""
    if challenge is None:
        challenge = os.urandom(8)
    elif len(challenge) != 8:
        raise ValueError("the Active Authentication challenge is 8 bytes")
    try:
        key = parse_dg15(dg15)
    except ActiveAuthenticationError as exc:
        return ActiveAuthenticationResult("unknown", str(exc))
    early = _ec_hash(key, signature_algorithm)
    if isinstance(early, ActiveAuthenticationResult):
        return early
    le = 256 if key.signature_length <= 256 else 65536
    answer, sw = transmit(secure.build_command(0x00, 0x88, 0x00, 0x00, challenge, le))
    if sw != 0x9000:
        return ActiveAuthenticationResult(
            "failed", f"the chip refused INTERNAL AUTHENTICATE ({sw:04X})", key.description
        )
    return verify_signature(key, challenge, answer, signature_algorithm)


def _ec_hash(
    key: ActiveAuthenticationKey, signature_algorithm: str | None
) -> str | ActiveAuthenticationResult | None:
    """The hash an ECDSA key signs with, or the "unknown" result when there is none."""
    if key.algorithm != "ec":
        return None
    if signature_algorithm is None:
        return ActiveAuthenticationResult(
            "unknown",
            "ECDSA key without DG14's ActiveAuthenticationInfo naming the signature algorithm",
            key.description,
        )
    name = SIGNATURE_ALGORITHMS.get(signature_algorithm)
    if name is None:
        return ActiveAuthenticationResult(
            "unknown", f"unsupported signature algorithm {signature_algorithm}", key.description
        )
    try:
        _digest_size(name)
    except UnsupportedActiveAuthentication as exc:
        return ActiveAuthenticationResult("unknown", str(exc), key.description)
    return name


def verify_signature(
    key: ActiveAuthenticationKey,
    challenge: bytes,
    signature: bytes,
    signature_algorithm: str | None = None,
) -> ActiveAuthenticationResult:
    """Check the chip's answer to INTERNAL AUTHENTICATE ``challenge``; never raises."""
    hash_name = _ec_hash(key, signature_algorithm)
    if isinstance(hash_name, ActiveAuthenticationResult):
        return hash_name
    try:
        if hash_name is None:
            return _verify_rsa(key, challenge, signature)
        return _verify_ecdsa(key, challenge, signature, hash_name)
    except UnsupportedActiveAuthentication as exc:
        return ActiveAuthenticationResult("unknown", str(exc), key.description)
    except (ActiveAuthenticationError, InvalidSignature, ValueError, OverflowError) as exc:
        reason = str(exc) or "the chip's signature does not verify"
        return ActiveAuthenticationResult("failed", reason, key.description)


def _verify_rsa(
    key: ActiveAuthenticationKey, challenge: bytes, signature: bytes
) -> ActiveAuthenticationResult:
    if not isinstance(key.public_key, rsa.RSAPublicKey):
        raise UnsupportedActiveAuthentication("not an RSA key")
    numbers = key.public_key.public_numbers()
    opened = open_iso9796_2(numbers.n, numbers.e, signature)
    trailer = "explicit trailer" if opened.explicit_trailer else "trailer BC"
    algorithm = f"{key.description} ISO/IEC 9796-2 {opened.hash_name.upper()} {trailer}"
    if not opened.partial:
        raise ActiveAuthenticationError("ISO/IEC 9796-2 signature claims total recovery")
    expected = hashlib.new(opened.hash_name, opened.recovered + challenge).digest()
    if not hmac.compare_digest(expected, opened.digest):
        return ActiveAuthenticationResult(
            "failed", "the chip's signature does not match the challenge", algorithm
        )
    return ActiveAuthenticationResult("passed", "", algorithm)


def _verify_ecdsa(
    key: ActiveAuthenticationKey, challenge: bytes, signature: bytes, hash_name: str
) -> ActiveAuthenticationResult:
    if key.curve is None:
        raise UnsupportedActiveAuthentication("EC key without domain parameters")
    algorithm = f"{key.description} {hash_name.upper()}"
    half = key.signature_length // 2
    if len(signature) == 2 * half:  # TR-03111 plain: r || s
        r = int.from_bytes(signature[:half], "big")
        s = int.from_bytes(signature[half:], "big")
    else:  # some chips answer with an X9.62 DER signature
        try:
            r, s = asym_utils.decode_dss_signature(signature)
            is_der = asym_utils.encode_dss_signature(r, s) == signature
        except ValueError:
            is_der = False
        if not is_der:
            raise ActiveAuthenticationError(
                f"answer of {len(signature)} bytes is not an ECDSA signature "
                f"({2 * half} bytes r || s expected)"
            )
        algorithm += " (DER signature)"
    n = key.curve.n
    if not (0 < r < n and 0 < s < n):
        return ActiveAuthenticationResult(
            "failed", "ECDSA signature values are out of range", algorithm
        )
    digest = hashlib.new(hash_name, challenge).digest()
    if isinstance(key.public_key, ec.EllipticCurvePublicKey):
        prehashed = asym_utils.Prehashed(_PREHASHED[len(digest)]())
        try:
            der = asym_utils.encode_dss_signature(r, s)
            key.public_key.verify(der, digest, ec.ECDSA(prehashed))
            valid = True
        except InvalidSignature:
            valid = False
    else:  # a curve the cryptography package lacks
        valid = curves.ecdsa_verify(key.curve, key.point, digest, r, s)
    if not valid:
        return ActiveAuthenticationResult(
            "failed", "the chip's signature does not match the challenge", algorithm
        )
    return ActiveAuthenticationResult("passed", "", algorithm)


# ------------------------------------------------------------------------ card side
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@overload
def generate_key(
    kind: Literal["rsa"] = "rsa", *, bits: int = 1024, curve: str = "brainpoolP256r1"
) -> rsa.RSAPrivateKey: ...


@overload
def generate_key(
    kind: Literal["ec"], *, bits: int = 1024, curve: str = "brainpoolP256r1"
) -> ec.EllipticCurvePrivateKey: ...


def generate_key(
    kind: Literal["rsa", "ec"] = "rsa", *, bits: int = 1024, curve: str = "brainpoolP256r1"
) -> PrivateKey:
    """A new Active Authentication key for an emulated chip: RSA-``bits`` (e = 65537), or
    EC on ``curve`` (a cryptography curve name: secp256r1, brainpoolP256r1, ...)."""
    if kind == "rsa":
        return rsa.generate_private_key(65537, bits)
    if kind == "ec":
        if curve not in _CRYPTO_CURVES:
            raise ValueError(f"unsupported curve {curve}")
        return ec.generate_private_key(_CRYPTO_CURVES[curve]())
    raise ValueError(f"unknown key kind {kind!r}")


active_authentication_key = generate_key


def dg15(
    key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey | PrivateKey,
    *,
    explicit_parameters: bool = False,
) -> bytes:
    """DG15 for ``key`` (a public key, or the private key whose public half it holds): tag 6F
    around its SubjectPublicKeyInfo; EC keys with a namedCurve OID, or with explicit
    ECParameters (as several countries issue them)."""
    public_key = (
        key.public_key() if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) else key
    )
    spki = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if explicit_parameters and isinstance(public_key, ec.EllipticCurvePublicKey):
        point = public_key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        curve = curves.CURVES[public_key.curve.name]
        algorithm = tlv.encode(0x06, curves.oid_to_der(EC_PUBLIC_KEY))
        algorithm += curves.curve_parameters(curve, explicit=True)
        spki = tlv.encode(0x30, tlv.encode(0x30, algorithm) + tlv.encode(0x03, b"\x00" + point))
    return tlv.encode(0x6F, spki)


def sign_challenge(
    private_key: PrivateKey,
    challenge: bytes,
    signature_algorithm: str | None = None,
    *,
    hash_name: str | None = None,
) -> bytes:
    """What a real chip answers to INTERNAL AUTHENTICATE ``challenge``.

    RSA: ISO/IEC 9796-2 scheme 1, M1 random bytes filling the representative, M2 the
    challenge; SHA-1 with trailer BC unless ``hash_name`` ("sha256", ...) asks for that hash
    with its explicit trailer. ECDSA: plain r || s (TR-03111) with the hash of
    ``signature_algorithm`` (an OID of ``SIGNATURE_ALGORITHMS``)."""
    if isinstance(private_key, rsa.RSAPrivateKey):
        name = hash_name or "sha1"
        capacity = iso9796_2_capacity(private_key.key_size, name, hash_name is not None)
        return sign_iso9796_2(
            private_key, os.urandom(capacity), challenge, name, hash_name is not None
        )
    if signature_algorithm not in SIGNATURE_ALGORITHMS:
        raise ValueError(f"ECDSA needs a known signature algorithm, not {signature_algorithm}")
    digest = hashlib.new(SIGNATURE_ALGORITHMS[signature_algorithm], challenge).digest()
    der = private_key.sign(digest, ec.ECDSA(asym_utils.Prehashed(_PREHASHED[len(digest)]())))
    r, s = asym_utils.decode_dss_signature(der)
    half = (private_key.curve.key_size + 7) // 8  # the order's length, on these curves
    return r.to_bytes(half, "big") + s.to_bytes(half, "big")
