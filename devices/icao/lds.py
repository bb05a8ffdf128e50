"""The eMRTD's Logical Data Structure (ICAO 9303 Part 10) and passive authentication
(Part 11, 5.1): parse EF.COM, DG1, DG2, EF.SOD; verify data group hashes, the Document
Signer's signature and its chain to a CSCA from a trust list (CSCA certificates and ICAO
master lists, whose own CMS signatures are checked and reported).

Parsers raise ``LDSError`` (a ``ValueError``) on anything malformed; passive authentication
never raises, it returns a ``PassiveAuthentication`` saying why. Loading a trust folder never
fails on one bad file or certificate: what was skipped, and why, is in ``TrustStore.report``.

Signatures are checked with ``cryptography`` where it can load the key; keys it refuses
(elliptic-curve keys given as explicit domain parameters of a brainpool curve, curves it
lacks such as brainpoolP224r1) are mapped to their named curve by ``devices.icao.ec`` and
checked with cryptography on that curve or with ``ec``'s arithmetic. Names are compared as
RFC 5280 section 7.1 does (simplified RFC 4518 preparation: NFKC, case folding, spaces).
Not handled: binary-field curves and explicit parameters matching no named curve (both
``unknown``), a document signer certificate that cryptography refuses inside EF.SOD
(LDSError), certificate revocation lists, ICAO PKD LDIF files.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import re
import unicodedata
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from asn1crypto import algos, cms
from asn1crypto import core as asn1
from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric import utils as asym_utils
from cryptography.x509.oid import NameOID

from devices.exceptions import CardError
from devices.icao import ec as curves
from devices.icao import mrz as mrz_mod
from devices.icao import tlv

EMRTD_AID = bytes.fromhex("A0000002471001")  # the eMRTD application (ICAO 9303-10)


class LDSError(CardError, ValueError):
    """A data group or security object that cannot be parsed."""


# short file identifiers / file ids (Part 10, 4.6.1) and the tags of their templates
FILES = {
    "COM": (0x011E, 0x60),
    "SOD": (0x011D, 0x77),
    "DG1": (0x0101, 0x61),
    "DG2": (0x0102, 0x75),
    "DG11": (0x010B, 0x6B),
    "DG12": (0x010C, 0x6C),
    "DG14": (0x010E, 0x6E),  # Chip Authentication / PACE security infos
    "DG15": (0x010F, 0x6F),  # Active Authentication public key
    "CardAccess": (0x011C, None),
}
DG_TAGS = {0x61: 1, 0x75: 2, 0x63: 3, 0x76: 4, 0x65: 5, 0x66: 6, 0x67: 7, 0x68: 8, 0x69: 9}
DG_TAGS |= {0x6A: 10, 0x6B: 11, 0x6C: 12, 0x6D: 13, 0x6E: 14, 0x6F: 15, 0x70: 16}


_P = ParamSpec("_P")
_R = TypeVar("_R")
# what a parser on outside data may raise besides LDSError: TLVError, MRZError and asn1crypto's
# errors are ValueErrors; cryptography's InvalidVersion is not (found by fuzzing)
_PARSE_ERRORS = (
    AttributeError,  # asn1crypto on some malformed nested values (found by fuzzing)
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    OverflowError,
    x509.InvalidVersion,
    UnsupportedAlgorithm,
)


def _wrap(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """Turn the parsers' low-level errors into LDSError."""

    def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return fn(*args, **kwargs)
        except LDSError:
            raise
        except _PARSE_ERRORS as exc:
            raise LDSError(f"{fn.__name__.strip('_').replace('_', ' ')}: {exc}") from exc

    run.__name__, run.__doc__ = fn.__name__, fn.__doc__
    return run


@_wrap
def header_length(data: bytes) -> int:
    """Total length of the file whose first bytes are ``data``, from its own TLV header
    (``tlv.header_length``, with its errors as LDSError)."""
    return tlv.header_length(data)


@_wrap
def parse_com(data: bytes) -> tuple[str, list[int]]:
    """EF.COM: (LDS version "0107", data group numbers present)."""
    com = tlv.parse(data)
    if com.tag != 0x60:
        raise LDSError("EF.COM must start with tag 60")
    version = com.find(0x5F01).value.decode("ascii")
    groups = []
    for tag in com.find(0x5C).value:
        if tag not in DG_TAGS:
            raise LDSError(f"EF.COM lists unknown data group tag {tag:02X}")
        groups.append(DG_TAGS[tag])
    return version, groups


@_wrap
def parse_dg1(data: bytes) -> mrz_mod.MRZ:
    """DG1: the MRZ, check digits verified."""
    dg = tlv.parse(data)
    if dg.tag != 0x61:
        raise LDSError("DG1 must start with tag 61")
    raw = dg.find(0x5F1F).value.decode("ascii")
    for width, count in ((30, 3), (36, 2), (44, 2)):  # TD1, TD2, TD3 (Part 10, 4.7.1)
        if len(raw) == width * count:
            lines = [raw[i : i + width] for i in range(0, len(raw), width)]
            return mrz_mod.parse("\n".join(lines))
    raise LDSError(f"DG1 holds an MRZ of {len(raw)} characters: not TD1, TD2 or TD3")


@dataclass(frozen=True)
class FaceImage:
    """The face image of DG2 as stored on the chip."""

    data: bytes
    mime: str  # image/jpeg or image/jp2
    width: int
    height: int


_JPEG, _JP2 = b"\xff\xd8\xff", b"\x00\x00\x00\x0cjP  \r\n\x87\n"
_J2K = b"\xff\x4f\xff\x51"


@_wrap
def parse_dg2(data: bytes) -> FaceImage:
    """DG2: the first face image (ISO/IEC 19794-5 record; for 39794-5 records the image
    is located by its JPEG / JPEG 2000 signature)."""
    dg = tlv.parse(data)
    if dg.tag != 0x75:
        raise LDSError("DG2 must start with tag 75")
    group = dg.find(0x7F61)
    count = int.from_bytes(group.find(0x02).value, "big")
    if count < 1:
        raise LDSError("DG2 holds no face")
    bit = group.find(0x7F60)
    bdb = next((c.value for c in bit.children() if c.tag in (0x5F2E, 0x7F2E)), None)
    if bdb is None:
        raise LDSError("DG2 has no biometric data block")
    if bdb[:4] == b"FAC\x00":
        return _iso19794_5(bdb)
    for sig, mime in ((_JPEG, "image/jpeg"), (_JP2, "image/jp2"), (_J2K, "image/jp2")):
        at = bdb.find(sig)
        if at >= 0:
            return FaceImage(bdb[at:], mime, 0, 0)
    raise LDSError("DG2 face record holds no JPEG or JPEG 2000 image")


def _iso19794_5(bdb: bytes) -> FaceImage:
    if len(bdb) < 14 + 20 + 12:
        raise LDSError("19794-5 record truncated")
    length = int.from_bytes(bdb[8:12], "big")
    faces = int.from_bytes(bdb[12:14], "big")
    if length != len(bdb) or faces < 1:
        raise LDSError("19794-5 record length or face count is inconsistent")
    block = int.from_bytes(bdb[14:18], "big")
    landmarks = int.from_bytes(bdb[18:20], "big")
    info = 14 + 20 + 8 * landmarks
    if block < 20 + 8 * landmarks + 12 or 14 + block > len(bdb):
        raise LDSError("19794-5 facial record block is inconsistent")
    image_type = bdb[info + 1]
    width = int.from_bytes(bdb[info + 2 : info + 4], "big")
    height = int.from_bytes(bdb[info + 4 : info + 6], "big")
    image = bdb[info + 12 : 14 + block]
    mime = {0: "image/jpeg", 1: "image/jp2"}.get(image_type)
    if mime is None:
        raise LDSError(f"unknown face image data type {image_type}")
    starts = (_JPEG,) if mime == "image/jpeg" else (_JP2, _J2K)
    if not image.startswith(starts):
        raise LDSError("face image does not start like its declared format")
    return FaceImage(image, mime, width, height)


# --------------------------------------------------------------------------- EF.SOD
# asn1crypto declares structures with class-level field lists (RUF012 does not apply)
class DataGroupHash(asn1.Sequence):
    _fields = [  # noqa: RUF012
        ("data_group_number", asn1.Integer),
        ("data_group_hash_value", asn1.OctetString),
    ]


class DataGroupHashValues(asn1.SequenceOf):
    _child_spec = DataGroupHash


class LDSVersionInfo(asn1.Sequence):
    _fields = [  # noqa: RUF012
        ("lds_version", asn1.PrintableString),
        ("unicode_version", asn1.PrintableString),
    ]


class LDSSecurityObject(asn1.Sequence):
    _fields = [  # noqa: RUF012
        ("version", asn1.Integer),
        ("hash_algorithm", cms.DigestAlgorithm),
        ("data_group_hash_values", DataGroupHashValues),
        ("lds_version_info", LDSVersionInfo, {"optional": True}),
    ]


LDS_SECURITY_OBJECT = "2.23.136.1.1.1"
# content types found in place of id-icao-ldsSecurityObject on documents in circulation:
# accepted when the content parses as an LDSSecurityObject
LEGACY_SECURITY_OBJECTS = {
    "1.3.27.1.1.1": "legacy id-icao-ldsSecurityObject (Belgian, French documents)",
    "1.2.528.1.1006.1.20.1": "Dutch LDS security object",
    "1.2.840.113549.1.7.1": "id-data",
}
_HASHES = {"sha1": hashlib.sha1, "sha224": hashlib.sha224, "sha256": hashlib.sha256}
_HASHES |= {"sha384": hashlib.sha384, "sha512": hashlib.sha512}
_CRYPTO_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
}
_CRYPTO_HASHES |= {"sha384": hashes.SHA384, "sha512": hashes.SHA512}


@dataclass(frozen=True)
class SecurityObject:
    """EF.SOD, parsed: hashes of the data groups and what is needed to verify them."""

    hash_algorithm: str
    hashes: dict[int, bytes]
    econtent: bytes
    signer_info: cms.SignerInfo
    certificates: tuple[x509.Certificate, ...]
    content_type: str = LDS_SECURITY_OBJECT  # the encapsulated content type, dotted


def _econtent(encap: cms.EncapsulatedContentInfo) -> bytes:
    """The signed bytes of a CMS encapsulated content (inside its OCTET STRING when
    asn1crypto did not unwrap it)."""
    content = encap["content"].contents
    return asn1.OctetString.load(content).native if content[:1] == b"\x04" else content


@_wrap
def parse_sod(data: bytes) -> SecurityObject:
    """EF.SOD: a CMS SignedData over an LDSSecurityObject (content type
    id-icao-ldsSecurityObject, or one of ``LEGACY_SECURITY_OBJECTS``)."""
    outer = tlv.parse(data)
    if outer.tag != 0x77:
        raise LDSError("EF.SOD must start with tag 77")
    info = cms.ContentInfo.load(outer.value, strict=True)
    if info["content_type"].native != "signed_data":
        raise LDSError("EF.SOD does not hold CMS SignedData")
    sd = info["content"]
    encap = sd["encap_content_info"]
    content_type = encap["content_type"].dotted
    if content_type != LDS_SECURITY_OBJECT and content_type not in LEGACY_SECURITY_OBJECTS:
        raise LDSError(f"EF.SOD does not sign an LDS security object (content {content_type})")
    econtent = _econtent(encap)
    try:
        lso = LDSSecurityObject.load(econtent, strict=True)
        lso.native  # noqa: B018  (parses every field now: a legacy type must really be one)
    except ValueError as exc:
        raise LDSError(f"EF.SOD content ({content_type}) is not an LDS security object") from exc
    algorithm = lso["hash_algorithm"]["algorithm"].native
    if algorithm not in _HASHES:
        raise LDSError(f"unsupported hash algorithm {algorithm}")
    table = {}
    for item in lso["data_group_hash_values"]:
        number = item["data_group_number"].native
        if not 1 <= number <= 16 or number in table:
            raise LDSError(f"invalid or repeated data group number {number}")
        table[number] = item["data_group_hash_value"].native
    signers = sd["signer_infos"]
    if len(signers) != 1:
        raise LDSError(f"EF.SOD has {len(signers)} signer infos, expected 1")
    certs = tuple(
        x509.load_der_x509_certificate(c.chosen.dump())
        for c in (sd["certificates"] or [])
        if c.name == "certificate"
    )
    return SecurityObject(algorithm, table, econtent, signers[0], certs, content_type)


# ------------------------------------------------------------------- names (RFC 5280, 7.1)
_NameKey = tuple[frozenset[tuple[str, object]], ...]


def _prep(text: str) -> str:
    """RFC 4518 string preparation, simplified: compatibility normalisation, case folding,
    leading / trailing spaces removed and inner runs of white space made one space."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def _attribute_value(value: asn1.Asn1Value) -> object:
    raw = value.dump()
    for read in (lambda: value.native, lambda: asn1.load(raw).native):
        try:
            native = read()
        except _PARSE_ERRORS:
            continue
        if isinstance(native, str):
            return _prep(native)
        break
    return raw  # not a string: compared by its encoding


def _name_key(name: asn1_x509.Name) -> _NameKey:
    """A name as a sequence of RDNs, each the set of its (type, prepared value) pairs."""
    return tuple(
        frozenset((atv["type"].dotted, _attribute_value(atv["value"])) for atv in rdn)
        for rdn in name.chosen
    )


def _same_name(a: _NameKey, b: _NameKey) -> bool:
    # RFC 5280 matches RDN by RDN in order; some documents name their issuer with the same
    # RDNs in another order than the certificate: accepted as a fallback
    return a == b or Counter(a) == Counter(b)


def _as_asn1_name(name: x509.Name | asn1_x509.Name | bytes) -> asn1_x509.Name:
    if isinstance(name, asn1_x509.Name):
        return name
    raw = name.public_bytes() if isinstance(name, x509.Name) else name
    return asn1_x509.Name.load(raw)


def names_match(
    a: x509.Name | asn1_x509.Name | bytes, b: x509.Name | asn1_x509.Name | bytes
) -> bool:
    """Whether two distinguished names (cryptography or asn1crypto names, or DER) name the
    same entity: attribute by attribute after string preparation (case, spaces, string
    type do not matter), and the same RDNs in another order as a fallback. False when
    either does not parse."""
    try:
        return _same_name(_name_key(_as_asn1_name(a)), _name_key(_as_asn1_name(b)))
    except _PARSE_ERRORS:
        return False


_SHORT_NAMES = {
    "2.5.4.6": "C",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "2.5.4.3": "CN",
    "2.5.4.5": "serialNumber",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
}


def _name_text(name: asn1_x509.Name) -> str:
    """A name for people: ``C=UT, O=..., CN=...`` in the certificate's order."""
    parts = []
    for rdn in name.chosen:
        for atv in rdn:
            oid = atv["type"].dotted
            try:
                value = atv["value"].native
            except _PARSE_ERRORS:
                value = "#" + atv["value"].dump().hex()
            parts.append(f"{_SHORT_NAMES.get(oid, oid)}={value}")
    return ", ".join(parts)


# ------------------------------------------------------------------ certificates, keys
@dataclass(frozen=True)
class _Cert:
    """What signature checks and name matching need from a certificate, read with
    asn1crypto from its own bytes (so a certificate cryptography refuses still has one)."""

    tbs: bytes  # tbsCertificate exactly as signed
    algorithm: algos.SignedDigestAlgorithm
    signature: bytes
    spki: bytes  # SubjectPublicKeyInfo, DER
    serial: int
    issuer_der: bytes
    issuer: _NameKey
    subject: _NameKey
    subject_text: str
    key_id: bytes  # subjectKeyIdentifier, or SHA-1 of the public key (RFC 5280 4.2.1.2 (1))
    authority_key_id: bytes | None


def _read_cert(der: bytes) -> _Cert:
    cert = asn1_x509.Certificate.load(der, strict=True)
    tbs = cert["tbs_certificate"]
    spki = tbs["subject_public_key_info"]
    try:
        key_id = cert.key_identifier
    except _PARSE_ERRORS:
        key_id = None
    try:
        authority = cert.authority_key_identifier
    except _PARSE_ERRORS:
        authority = None
    return _Cert(
        tbs=tbs.dump(),
        algorithm=cert["signature_algorithm"],
        signature=cert["signature_value"].native,
        spki=spki.dump(),
        serial=tbs["serial_number"].native,
        issuer_der=tbs["issuer"].dump(),
        issuer=_name_key(tbs["issuer"]),
        subject=_name_key(tbs["subject"]),
        subject_text=_name_text(tbs["subject"]),
        key_id=key_id or spki.sha1,
        authority_key_id=authority,
    )


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


class _Unverifiable(LDSError):
    """A signature this code cannot check (algorithm, key type or curve): neither valid
    nor invalid."""


@dataclass(frozen=True)
class _CurveKey:
    """An EC public key on a curve cryptography lacks: checked with ``devices.icao.ec``."""

    curve: curves.Curve
    point: curves.Point


_PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | dsa.DSAPublicKey | _CurveKey
_CRYPTOGRAPHY_CURVES: dict[str, Callable[[], ec.EllipticCurve]] = {
    "secp192r1": ec.SECP192R1,
    "secp224r1": ec.SECP224R1,
    "secp256r1": ec.SECP256R1,
    "secp384r1": ec.SECP384R1,
    "secp521r1": ec.SECP521R1,
    "brainpoolP256r1": ec.BrainpoolP256R1,
    "brainpoolP384r1": ec.BrainpoolP384R1,
    "brainpoolP512r1": ec.BrainpoolP512R1,
}


def _public_key(spki_der: bytes) -> _PublicKey:
    """The key of a SubjectPublicKeyInfo. EC keys cryptography refuses (explicit domain
    parameters of a curve other than P-256/384/521, or a curve it lacks) are mapped to their
    named curve. Raises _Unverifiable for what cannot be used, InvalidSignature for a key
    that is not valid (an EC point off its curve)."""
    try:
        key = serialization.load_der_public_key(spki_der)
    except (UnsupportedAlgorithm, ValueError) as exc:
        refused = exc
    else:
        if isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey | dsa.DSAPublicKey):
            return key
        raise _Unverifiable(f"unsupported {type(key).__name__} key")
    try:
        info = asn1_keys.PublicKeyInfo.load(spki_der, strict=True)
        algorithm = info["algorithm"]["algorithm"].dotted
        parameters = info["algorithm"]["parameters"]
        point = info["public_key"].contents[1:]  # BIT STRING: unused-bits octet, then the point
    except _PARSE_ERRORS as exc:
        raise _Unverifiable(f"public key does not parse ({exc})") from exc
    if algorithm != "1.2.840.10045.2.1":  # id-ecPublicKey
        raise _Unverifiable(f"unsupported public key algorithm {algorithm} ({refused})")
    try:
        curve = curves.curve_from_parameters(parameters.dump())
    except curves.ECError as exc:
        raise _Unverifiable(f"EC domain parameters: {exc}") from exc
    try:
        decoded = curve.decode(point)
    except curves.ECError as exc:
        raise InvalidSignature(f"public key: {exc}") from exc
    make = _CRYPTOGRAPHY_CURVES.get(curve.name)
    if make is None:
        return _CurveKey(curve, decoded)
    return ec.EllipticCurvePublicKey.from_encoded_point(make(), curve.encode(decoded))


# BSI TR-03111 ecdsa-plain-signatures: r || s instead of a DER Ecdsa-Sig-Value
_PLAIN_ECDSA = {
    "0.4.0.127.0.7.1.1.4.1.1": "sha1",
    "0.4.0.127.0.7.1.1.4.1.2": "sha224",
    "0.4.0.127.0.7.1.1.4.1.3": "sha256",
    "0.4.0.127.0.7.1.1.4.1.4": "sha384",
    "0.4.0.127.0.7.1.1.4.1.5": "sha512",
}


def _algorithm(algorithm: algos.SignedDigestAlgorithm, digest: str | None) -> tuple[str, str]:
    """(signature scheme, hash) of a signature algorithm identifier; ``digest`` is the hash
    when the identifier names none (bare rsaEncryption or id-ecPublicKey)."""
    oid = algorithm["algorithm"].dotted
    if oid in _PLAIN_ECDSA:
        return "ecdsa_plain", _PLAIN_ECDSA[oid]
    try:
        scheme = algorithm.signature_algo
    except ValueError as exc:
        raise _Unverifiable(f"unsupported signature algorithm {oid}") from exc
    try:
        hash_name = algorithm.hash_algo
    except ValueError:
        hash_name = digest or ""
    if hash_name not in _HASHES:
        raise _Unverifiable(f"unsupported hash {hash_name or 'none'} for {scheme}")
    return scheme, hash_name


def _ecdsa_values(signature: bytes, plain: bool) -> tuple[int, int]:
    if plain:
        if not signature or len(signature) % 2:
            raise InvalidSignature("plain ECDSA signature of odd length")
        half = len(signature) // 2
        return int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big")
    try:
        return asym_utils.decode_dss_signature(signature)
    except ValueError as exc:
        raise InvalidSignature("ECDSA signature is not a DER Ecdsa-Sig-Value") from exc


def _verify(
    spki: bytes,
    algorithm: algos.SignedDigestAlgorithm,
    signature: bytes,
    data: bytes,
    digest: str | None = None,
) -> None:
    """Check ``signature`` over ``data``: InvalidSignature when it is wrong, _Unverifiable
    when the algorithm, key or curve is one this code cannot check."""
    scheme, hash_name = _algorithm(algorithm, digest)
    key = _public_key(spki)
    algo = _CRYPTO_HASHES[hash_name]()
    if scheme in ("ecdsa", "ecdsa_plain"):
        plain = scheme == "ecdsa_plain"
        if isinstance(key, _CurveKey):
            r, s = _ecdsa_values(signature, plain)
            if not curves.ecdsa_verify(
                key.curve, key.point, _HASHES[hash_name](data).digest(), r, s
            ):
                raise InvalidSignature("ECDSA signature does not verify")
            return
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise InvalidSignature(f"an ECDSA signature cannot be made by a {_kind(key)} key")
        if plain:
            signature = asym_utils.encode_dss_signature(*_ecdsa_values(signature, plain=True))
        key.verify(signature, data, ec.ECDSA(algo))
    elif scheme in ("rsassa_pkcs1v15", "rsassa_pss"):
        if not isinstance(key, rsa.RSAPublicKey):
            raise InvalidSignature(f"an RSA signature cannot be made by a {_kind(key)} key")
        if scheme == "rsassa_pss":
            mgf_hash = _pss_mgf_hash(algorithm, hash_name)
            pad: padding.AsymmetricPadding = padding.PSS(
                padding.MGF1(_CRYPTO_HASHES[mgf_hash]()), padding.PSS.AUTO
            )
        else:
            pad = padding.PKCS1v15()
        key.verify(signature, data, pad, algo)
    elif scheme == "dsa":
        if not isinstance(key, dsa.DSAPublicKey):
            raise InvalidSignature(f"a DSA signature cannot be made by a {_kind(key)} key")
        key.verify(signature, data, algo)
    else:
        raise _Unverifiable(f"unsupported signature scheme {scheme}")


def _kind(key: _PublicKey) -> str:
    return "EC" if isinstance(key, ec.EllipticCurvePublicKey | _CurveKey) else type(key).__name__


def _pss_mgf_hash(algorithm: algos.SignedDigestAlgorithm, default: str) -> str:
    try:
        name = algorithm["parameters"]["mask_gen_algorithm"]["parameters"]["algorithm"].native
    except _PARSE_ERRORS:
        return default
    if name not in _HASHES:
        raise _Unverifiable(f"unsupported RSASSA-PSS mask hash {name}")
    return str(name)


def _check(
    spki: bytes,
    algorithm: algos.SignedDigestAlgorithm,
    signature: bytes,
    data: bytes,
    digest: str | None = None,
) -> tuple[str, str]:
    """``_verify`` as an outcome: ("ok", ""), ("invalid", why) or ("unknown", why)."""
    try:
        _verify(spki, algorithm, signature, data, digest)
    except InvalidSignature as exc:
        return "invalid", str(exc) or "signature does not verify"
    except _Unverifiable as exc:
        return "unknown", str(exc)
    except _PARSE_ERRORS as exc:  # a malformed key or parameter inside the structure
        return "invalid", f"{type(exc).__name__}: {exc}"
    return "ok", ""


# ------------------------------------------------------------- passive authentication
@dataclass(frozen=True)
class PassiveAuthentication:
    """Result of passive authentication: ``valid``, ``invalid`` (with reason),
    ``unknown_csca`` (the signer chains to no trusted CSCA) or ``unknown`` (a signature this
    terminal cannot check: algorithm, key type or curve; the reason says which)."""

    status: str
    reason: str = ""
    document_signer: str = ""  # the DS certificate's subject, for operators
    checked_groups: tuple[int, ...] = ()

    @property
    def valid(self) -> bool:
        """True only for a fully verified document."""
        return self.status == "valid"


# master-list signature statuses in TrustReport
ML_VERIFIED = "signature verified"
ML_NO_CSCA = "signer's CSCA not present"
ML_INVALID = "signature INVALID"
ML_UNVERIFIABLE = "signature not verifiable"
ID_ICAO_CSCA_MASTER_LIST = "2.23.136.1.1.2"


@dataclass
class SkippedItem:
    """Something of a trust folder that was not loaded."""

    file: str
    index: int | None  # position in a master list / PEM file; None: the whole file
    subject: str  # the certificate's subject when asn1crypto could read it, else ""
    reason: str


@dataclass
class FileReport:
    """What one file of a trust folder gave."""

    name: str
    kind: str  # "certificate", "PEM", "master list" or "unreadable"
    certificates: int = 0  # loaded (trusted) from this file
    skipped: int = 0
    countries: dict[str, int] = field(default_factory=dict)
    signature: str = ""  # master lists: one of the ML_* statuses
    signature_reason: str = ""
    signer: str = ""  # master lists: the signer certificate's subject


@dataclass
class TrustReport:
    """What a trust folder held: loaded files and certificates, what was skipped and why,
    and each master list's signature status."""

    folder: str = ""
    files: list[FileReport] = field(default_factory=list)
    skipped: list[SkippedItem] = field(default_factory=list)
    certificates: int = 0  # distinct trusted certificates
    countries: dict[str, int] = field(default_factory=dict)

    @property
    def master_lists(self) -> list[FileReport]:
        """The master lists among the files."""
        return [f for f in self.files if f.kind == "master list"]

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return asdict(self)


def _country(cert: x509.Certificate) -> str:
    try:
        values = cert.subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)
    except _PARSE_ERRORS:
        return "?"
    return str(values[0].value).upper() if values else "?"


def _countries(certs: Iterable[x509.Certificate]) -> dict[str, int]:
    return dict(sorted(Counter(_country(c) for c in certs).items()))


class TrustStore:
    """CSCA certificates trusted for passive authentication, loaded from a folder of PEM /
    DER certificates and ICAO master lists (``.ml``, CMS SignedData of a CscaMasterList).

    A certificate that ``cryptography`` refuses is skipped and reported, the rest of its file
    kept; a file that is neither a certificate nor a master list is reported. Each master
    list's CMS signature is checked against its signer certificate, and the signer against a
    CSCA of the trust material; a master list whose signature is invalid is not trusted. The
    folder stays configuration a technician controls: a master list whose signer's CSCA is
    absent is still loaded (and reported so). ``report`` says what happened."""

    def __init__(
        self, certificates: Iterable[x509.Certificate] = (), report: TrustReport | None = None
    ) -> None:
        self.certificates = list(certificates)
        self.report = report or TrustReport(
            certificates=len(self.certificates), countries=_countries(self.certificates)
        )
        self._views: dict[x509.Certificate, _Cert | None] = {}

    @classmethod
    def from_folder(cls, folder: str | Path) -> TrustStore:
        """Load every certificate and master list in ``folder`` (OSError if the folder
        cannot be listed; nothing in it is fatal)."""
        return _load_folder(Path(folder))

    def _view(self, cert: x509.Certificate) -> _Cert | None:
        if cert not in self._views:
            try:
                self._views[cert] = _read_cert(_der(cert))
            except _PARSE_ERRORS:
                self._views[cert] = None
        return self._views[cert]

    def _issuers(self, cert: _Cert) -> list[tuple[x509.Certificate, _Cert, bool]]:
        """(CSCA, its view, key identifiers match) for the trusted certificates that may have
        issued ``cert``: same name (RFC 5280 comparison) or subjectKeyIdentifier equal to
        ``cert``'s authorityKeyIdentifier; key-identifier matches first."""
        found = []
        for candidate in self.certificates:
            view = self._view(candidate)
            if view is None:
                continue
            by_key = cert.authority_key_id is not None and cert.authority_key_id == view.key_id
            if by_key or _same_name(view.subject, cert.issuer):
                found.append((candidate, view, by_key))
        found.sort(key=lambda item: not item[2])
        return found

    def issuers_of(self, cert: x509.Certificate) -> list[x509.Certificate]:
        """Trusted certificates that may have issued ``cert``: whose subject is ``cert``'s
        issuer (compared as RFC 5280 does), or whose subjectKeyIdentifier is ``cert``'s
        authorityKeyIdentifier; those matched by key identifier first."""
        try:
            view = _read_cert(_der(cert))
        except _PARSE_ERRORS:
            return []
        return [c for c, _, _ in self._issuers(view)]


class CscaMasterList(asn1.Sequence):
    _fields = [  # noqa: RUF012
        ("version", asn1.Integer),
        ("cert_list", asn1.SetOf, {"spec": asn1.Any}),
    ]


def passive_authentication(
    sod: SecurityObject,
    groups: Mapping[int, bytes],
    trust: TrustStore,
    at: dt.datetime | None = None,
) -> PassiveAuthentication:
    """Verify the read data groups against EF.SOD, its signature and the DS chain. Never
    raises: what cannot be checked is ``unknown`` with a reason."""
    try:
        return _passive_authentication(sod, groups, trust, at or dt.datetime.now(dt.UTC))
    except Exception as exc:  # a verdict, never a crash, on whatever a document holds
        return PassiveAuthentication("unknown", f"verification failed: {type(exc).__name__}")


def _passive_authentication(
    sod: SecurityObject, groups: Mapping[int, bytes], trust: TrustStore, at: dt.datetime
) -> PassiveAuthentication:
    hasher = _HASHES[sod.hash_algorithm]
    for number, raw in sorted(groups.items()):
        if number not in sod.hashes:
            return PassiveAuthentication("invalid", f"DG{number} is not covered by EF.SOD")
        if hasher(raw).digest() != sod.hashes[number]:
            return PassiveAuthentication("invalid", f"hash of DG{number} does not match EF.SOD")
    si = sod.signer_info
    digest = si["digest_algorithm"]["algorithm"].native
    if digest not in _HASHES:
        return PassiveAuthentication("unknown", f"unsupported signer digest {digest}")
    signed_attrs = si["signed_attrs"]
    if not signed_attrs:
        return PassiveAuthentication("invalid", "EF.SOD signature has no signed attributes")
    attrs = {a["type"].native: a["values"][0].native for a in signed_attrs}
    if attrs.get("message_digest") != _HASHES[digest](sod.econtent).digest():
        return PassiveAuthentication("invalid", "EF.SOD message digest does not match")
    found = _signer_certificate(sod)
    if found is None:
        return PassiveAuthentication("invalid", "document signer certificate not found")
    ds, ds_view = found
    subject = ds_view.subject_text
    signed = signed_attrs.untag().dump()  # DER of the SET OF, as signed
    outcome, why = _check(
        ds_view.spki, si["signature_algorithm"], si["signature"].native, signed, digest
    )
    if outcome == "invalid":
        return PassiveAuthentication(
            "invalid", f"EF.SOD signature does not verify ({why})", subject
        )
    if outcome == "unknown":
        return PassiveAuthentication(
            "unknown", f"EF.SOD signature cannot be checked: {why}", subject
        )
    if not ds.not_valid_before_utc <= at <= ds.not_valid_after_utc:
        return PassiveAuthentication(
            "invalid", "document signer certificate is outside its validity period", subject
        )
    candidates = trust._issuers(ds_view)
    if not candidates:
        return PassiveAuthentication("unknown_csca", "no trusted CSCA issued the signer", subject)
    unknown = ""
    for csca, view, _ in candidates:
        outcome, why = _check(view.spki, ds_view.algorithm, ds_view.signature, ds_view.tbs)
        if outcome == "unknown":
            unknown = unknown or why
            continue
        if outcome != "ok":
            continue
        if not csca.not_valid_before_utc <= at <= csca.not_valid_after_utc:
            return PassiveAuthentication("invalid", "CSCA certificate has expired", subject)
        return PassiveAuthentication("valid", "", subject, tuple(sorted(groups)))
    if unknown:
        return PassiveAuthentication(
            "unknown", f"the CSCA's signature on the signer cannot be checked: {unknown}", subject
        )
    return PassiveAuthentication(
        "invalid", "document signer certificate is not signed by its CSCA", subject
    )


def _matches_sid(sid: cms.SignerIdentifier, view: _Cert) -> int:
    """How well a certificate fits a SignerInfo's sid: 0 not at all, 1 by the issuer name
    compared as RFC 5280 does, 2 by the exact issuer bytes or by the key identifier."""
    if sid.name == "issuer_and_serial_number":
        ias = sid.chosen
        if view.serial != ias["serial_number"].native:
            return 0
        if view.issuer_der == ias["issuer"].dump():
            return 2
        return 1 if _same_name(view.issuer, _name_key(ias["issuer"])) else 0
    return 2 if view.key_id == sid.chosen.native else 0


def _signer_certificate(sod: SecurityObject) -> tuple[x509.Certificate, _Cert] | None:
    sid = sod.signer_info["sid"]
    best: tuple[int, x509.Certificate, _Cert] | None = None
    for cert in sod.certificates:
        try:
            view = _read_cert(_der(cert))
        except _PARSE_ERRORS:
            continue
        score = _matches_sid(sid, view)
        if score and (best is None or score > best[0]):
            best = (score, cert, view)
    return None if best is None else (best[1], best[2])


# ------------------------------------------------------------------- trust folder loading
_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", re.DOTALL)


@dataclass
class _MasterList:
    """A master list between the two passes of folder loading."""

    report: FileReport
    outcome: str  # of the CMS signature alone: "ok", "invalid" or "unknown"
    reason: str
    signer: _Cert | None


def _load_one(der: bytes) -> x509.Certificate:
    """A certificate cryptography accepts (deprecation warnings, e.g. for a negative serial
    number, do not go to the console: the certificate is loaded)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return x509.load_der_x509_certificate(der)


def _subject_of(der: bytes) -> str:
    try:
        return _name_text(asn1_x509.Certificate.load(der)["tbs_certificate"]["subject"])
    except _PARSE_ERRORS:
        return ""


def _read_pem(raw: bytes, report: FileReport, skipped: list[SkippedItem]) -> list[bytes]:
    out = []
    for index, block in enumerate(_PEM.findall(raw)):
        try:
            out.append(base64.b64decode(b"".join(block.split()), validate=True))
        except (binascii.Error, ValueError) as exc:
            skipped.append(SkippedItem(report.name, index, "", f"bad PEM base64: {exc}"))
    return out


def _signed_data(raw: bytes) -> cms.SignedData | None:
    try:
        info = cms.ContentInfo.load(raw, strict=True)
        if info["content_type"].native != "signed_data":
            return None
        sd = info["content"]
        sd["encap_content_info"]["content_type"].dotted  # noqa: B018  (parse it now)
    except _PARSE_ERRORS:
        return None
    return sd if isinstance(sd, cms.SignedData) else None


def _check_master_list(sd: cms.SignedData, econtent: bytes) -> tuple[str, str, _Cert | None]:
    """The master list's CMS signature against its signer certificate (in the CMS):
    (outcome, reason, signer)."""
    signers = sd["signer_infos"]
    if len(signers) != 1:
        return "unknown", f"{len(signers)} signer infos, expected 1", None
    si = signers[0]
    signer: _Cert | None = None
    best = 0
    for choice in sd["certificates"] or []:
        if choice.name != "certificate":
            continue
        try:
            view = _read_cert(choice.chosen.dump())
        except _PARSE_ERRORS:
            continue
        score = _matches_sid(si["sid"], view)
        if score > best:
            signer, best = view, score
    if signer is None:
        return "unknown", "the signer certificate is not in the master list's CMS", None
    digest = si["digest_algorithm"]["algorithm"].native
    if digest not in _HASHES:
        return "unknown", f"unsupported digest {digest}", signer
    signed_attrs = si["signed_attrs"]
    data = econtent
    if signed_attrs:
        attrs = {a["type"].native: a["values"][0].native for a in signed_attrs}
        if attrs.get("message_digest") != _HASHES[digest](econtent).digest():
            return "invalid", "the message digest does not match the certificate list", signer
        data = signed_attrs.untag().dump()
    outcome, why = _check(signer.spki, si["signature_algorithm"], si["signature"].native, data)
    return outcome, why, signer


def _read_file(
    name: str,
    raw: bytes,
    skipped: list[SkippedItem],
) -> tuple[FileReport, list[x509.Certificate], _MasterList | None]:
    """One file of a trust folder: its report, the certificates it gives, and the master
    list waiting for its signer check (pass two)."""
    report = FileReport(name, "unreadable")
    before = len(skipped)
    certs: list[x509.Certificate] = []
    pending: _MasterList | None = None
    ders: list[tuple[int | None, bytes]] = []
    if b"-----BEGIN CERTIFICATE-----" in raw:
        report.kind = "PEM"
        ders = list(enumerate(_read_pem(raw, report, skipped)))
    else:
        try:
            certs.append(_load_one(raw))
            report.kind = "certificate"
        except _PARSE_ERRORS:
            sd = _signed_data(raw)
            if sd is not None:
                report.kind = "master list"
                pending, ders = _read_master_list(report, sd, skipped)
            elif _subject_of(raw):
                report.kind = "certificate"
                ders = [(None, raw)]
            else:
                skipped.append(
                    SkippedItem(name, None, "", "neither a certificate nor an ICAO master list")
                )
    for index, der in ders:
        try:
            certs.append(_load_one(der))
        except _PARSE_ERRORS as exc:
            subject = _subject_of(der)
            skipped.append(SkippedItem(name, index, subject, f"cryptography refuses it: {exc}"))
    report.skipped = len(skipped) - before
    return report, certs, pending


def _read_master_list(
    report: FileReport, sd: cms.SignedData, skipped: list[SkippedItem]
) -> tuple[_MasterList | None, list[tuple[int | None, bytes]]]:
    content_type = sd["encap_content_info"]["content_type"].dotted
    try:
        econtent = _econtent(sd["encap_content_info"])
        ml = CscaMasterList.load(econtent, strict=True)
        items = list(ml["cert_list"])
    except _PARSE_ERRORS as exc:
        report.kind = "unreadable"
        skipped.append(
            SkippedItem(report.name, None, "", f"CMS SignedData without a CscaMasterList: {exc}")
        )
        return None, []
    outcome, why, signer = _check_master_list(sd, econtent)
    if content_type != ID_ICAO_CSCA_MASTER_LIST and outcome == "ok":
        outcome, why = "unknown", f"content type {content_type}, not id-icao-cscaMasterList"
    report.signer = signer.subject_text if signer else ""
    return _MasterList(report, outcome, why, signer), [
        (index, item.dump()) for index, item in enumerate(items)
    ]


def _load_folder(folder: Path) -> TrustStore:
    report = TrustReport(folder=str(folder))
    sources: list[tuple[FileReport, list[x509.Certificate]]] = []
    pending: list[_MasterList] = []
    for path in sorted(folder.iterdir()):
        if not path.is_file():
            continue
        try:
            raw = path.read_bytes()
        except OSError as exc:
            report.files.append(FileReport(path.name, "unreadable"))
            report.skipped.append(SkippedItem(path.name, None, "", f"cannot read: {exc}"))
            continue
        file_report, certs, ml = _read_file(path.name, raw, report.skipped)
        report.files.append(file_report)
        sources.append((file_report, certs))
        if ml is not None:
            pending.append(ml)
    # pass two: master lists whose own signature is wrong give nothing; the others' signers
    # are checked against the CSCAs of everything else that loaded
    for ml in pending:
        if ml.outcome == "invalid":
            ml.report.signature, ml.report.signature_reason = ML_INVALID, ml.reason
    pool = [
        (cert, file_report.name)
        for file_report, certs in sources
        if file_report.signature != ML_INVALID
        for cert in certs
    ]
    anchors = TrustStore(cert for cert, _ in pool)
    origin = {cert: name for cert, name in pool}
    for ml in pending:
        if ml.outcome == "invalid":
            continue
        if ml.outcome == "unknown" or ml.signer is None:
            ml.report.signature, ml.report.signature_reason = ML_UNVERIFIABLE, ml.reason
            continue
        ml.report.signature, ml.report.signature_reason = _signer_status(ml.signer, anchors, origin)
    seen: set[bytes] = set()
    trusted: list[x509.Certificate] = []
    for file_report, certs in sources:
        if file_report.signature == ML_INVALID:
            for cert in certs:
                report.skipped.append(
                    SkippedItem(
                        file_report.name,
                        None,
                        _subject_of(_der(cert)),
                        "in a master list whose signature is invalid",
                    )
                )
            file_report.skipped += len(certs)
            continue
        file_report.certificates = len(certs)
        file_report.countries = _countries(certs)
        for cert in certs:
            fingerprint = hashlib.sha256(_der(cert)).digest()
            if fingerprint not in seen:
                seen.add(fingerprint)
                trusted.append(cert)
    report.certificates = len(trusted)
    report.countries = _countries(trusted)
    return TrustStore(trusted, report)


def _signer_status(
    signer: _Cert, anchors: TrustStore, origin: Mapping[x509.Certificate, str]
) -> tuple[str, str]:
    """A master-list signer certificate against the CSCAs loaded: (status, reason)."""
    unknown = ""
    for csca, view, by_key in anchors._issuers(signer):
        outcome, why = _check(view.spki, signer.algorithm, signer.signature, signer.tbs)
        if outcome == "ok":
            return ML_VERIFIED, f"signer issued by {view.subject_text} (from {origin[csca]})"
        if outcome == "unknown":
            unknown = unknown or why
        elif by_key:  # the CSCA the signer names by key identifier did not sign it
            return ML_INVALID, f"the signer certificate's signature by its CSCA is wrong: {why}"
    if unknown:
        return ML_UNVERIFIABLE, f"the signer's CSCA signature cannot be checked: {unknown}"
    return ML_NO_CSCA, f"no loaded CSCA issued the signer {signer.subject_text}"
