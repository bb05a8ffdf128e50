"""The eMRTD's Logical Data Structure (ICAO 9303 Part 10) and passive authentication
(Part 11, 5.1): parse EF.COM, DG1, DG2, EF.SOD; verify data group hashes, the Document
Signer's signature and its chain to a CSCA from a trust list.

Parsers raise ``LDSError`` (a ``ValueError``) on anything malformed; passive authentication
never raises for a bad document, it returns a ``PassiveAuthentication`` saying why.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from asn1crypto import cms
from asn1crypto import core as asn1
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from devices.exceptions import CardError
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
    "CardAccess": (0x011C, None),
}
DG_TAGS = {0x61: 1, 0x75: 2, 0x63: 3, 0x76: 4, 0x65: 5, 0x66: 6, 0x67: 7, 0x68: 8, 0x69: 9}
DG_TAGS |= {0x6A: 10, 0x6B: 11, 0x6C: 12, 0x6D: 13, 0x6E: 14, 0x6F: 15, 0x70: 16}


def _wrap(fn):
    """Turn the parsers' low-level errors into LDSError."""

    def run(data: bytes, *args, **kwargs):
        try:
            return fn(data, *args, **kwargs)
        except LDSError:
            raise
        except (
            ValueError,
            TypeError,
            KeyError,
            IndexError,
            OverflowError,
            x509.InvalidVersion,  # found by fuzzing: not a ValueError
        ) as exc:
            raise LDSError(f"{fn.__name__.strip('_').replace('_', ' ')}: {exc}") from exc

    run.__name__, run.__doc__ = fn.__name__, fn.__doc__
    return run


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
    for width in (30, 44, 36):
        if len(raw) % width == 0 and len(raw) // width in (2, 3):
            lines = [raw[i : i + width] for i in range(0, len(raw), width)]
            return mrz_mod.parse("\n".join(lines))
    raise LDSError(f"DG1 holds an MRZ of {len(raw)} characters: not TD1 or TD3")


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


def _econtent(encap: cms.EncapsulatedContentInfo) -> bytes:
    """The signed bytes of a CMS encapsulated content (inside its OCTET STRING when
    asn1crypto did not unwrap it)."""
    content = encap["content"].contents
    return asn1.OctetString.load(content).native if content[:1] == b"\x04" else content


@_wrap
def parse_sod(data: bytes) -> SecurityObject:
    """EF.SOD: a CMS SignedData over an LDSSecurityObject."""
    outer = tlv.parse(data)
    if outer.tag != 0x77:
        raise LDSError("EF.SOD must start with tag 77")
    info = cms.ContentInfo.load(outer.value, strict=True)
    if info["content_type"].native != "signed_data":
        raise LDSError("EF.SOD does not hold CMS SignedData")
    sd = info["content"]
    encap = sd["encap_content_info"]
    if encap["content_type"].dotted != LDS_SECURITY_OBJECT:
        raise LDSError("EF.SOD does not sign an LDS security object")
    econtent = _econtent(encap)
    lso = LDSSecurityObject.load(econtent, strict=True)
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
    return SecurityObject(algorithm, table, econtent, signers[0], certs)


# ------------------------------------------------------------- passive authentication
@dataclass(frozen=True)
class PassiveAuthentication:
    """Result of passive authentication: ``valid``, ``invalid`` (with reason) or
    ``unknown_csca`` (the signer chains to no trusted CSCA)."""

    status: str
    reason: str = ""
    document_signer: str = ""  # the DS certificate's subject, for operators
    checked_groups: tuple[int, ...] = ()

    @property
    def valid(self) -> bool:
        """True only for a fully verified document."""
        return self.status == "valid"


class TrustStore:
    """CSCA certificates trusted for passive authentication, loaded from a folder of PEM /
    DER certificates and ICAO master lists (``.ml``, CMS SignedData of a CscaMasterList).
    The folder is configuration a technician controls: master-list signatures are not
    re-verified here."""

    def __init__(self, certificates: Iterable[x509.Certificate] = ()) -> None:
        self.certificates = list(certificates)

    @classmethod
    def from_folder(cls, folder: str | Path) -> TrustStore:
        """Load every certificate and master list in ``folder``."""
        out: list[x509.Certificate] = []
        for path in sorted(Path(folder).iterdir()):
            if path.is_file():
                out.extend(_load_certificates(path.read_bytes(), path.name))
        return cls(out)

    def issuers_of(self, cert: x509.Certificate) -> list[x509.Certificate]:
        """Trusted certificates whose subject is ``cert``'s issuer."""
        return [c for c in self.certificates if c.subject == cert.issuer]


class CscaMasterList(asn1.Sequence):
    _fields = [  # noqa: RUF012
        ("version", asn1.Integer),
        ("cert_list", asn1.SetOf, {"spec": asn1.Any}),
    ]


def _load_certificates(raw: bytes, name: str) -> list[x509.Certificate]:
    if b"-----BEGIN CERTIFICATE-----" in raw:
        return x509.load_pem_x509_certificates(raw)
    try:
        return [x509.load_der_x509_certificate(raw)]
    except ValueError:
        pass
    try:  # ICAO master list
        info = cms.ContentInfo.load(raw, strict=True)
        content = _econtent(info["content"]["encap_content_info"])
        ml = CscaMasterList.load(content, strict=True)
        return [x509.load_der_x509_certificate(c.dump()) for c in ml["cert_list"]]
    except (ValueError, TypeError, KeyError) as exc:
        raise LDSError(f"{name}: not a certificate or an ICAO master list") from exc


def _verify_signature(
    cert: x509.Certificate, signature: bytes, data: bytes, digest: str, scheme: str
) -> None:
    key = cert.public_key()
    algo = _CRYPTO_HASHES[digest]()
    if isinstance(key, rsa.RSAPublicKey):
        pad = (
            padding.PSS(padding.MGF1(algo), padding.PSS.AUTO)
            if scheme == "rsassa_pss"
            else padding.PKCS1v15()
        )
        key.verify(signature, data, pad, algo)
    elif isinstance(key, ec.EllipticCurvePublicKey):
        key.verify(signature, data, ec.ECDSA(algo))
    else:
        raise InvalidSignature("unsupported document signer key type")


def passive_authentication(
    sod: SecurityObject,
    groups: Mapping[int, bytes],
    trust: TrustStore,
    at: dt.datetime | None = None,
) -> PassiveAuthentication:
    """Verify the read data groups against EF.SOD, its signature and the DS chain."""
    at = at or dt.datetime.now(dt.UTC)
    hasher = _HASHES[sod.hash_algorithm]
    for number, raw in sorted(groups.items()):
        if number not in sod.hashes:
            return PassiveAuthentication("invalid", f"DG{number} is not covered by EF.SOD")
        if hasher(raw).digest() != sod.hashes[number]:
            return PassiveAuthentication("invalid", f"hash of DG{number} does not match EF.SOD")
    si = sod.signer_info
    digest = si["digest_algorithm"]["algorithm"].native
    if digest not in _HASHES:
        return PassiveAuthentication("invalid", f"unsupported signer digest {digest}")
    signed_attrs = si["signed_attrs"]
    if not signed_attrs:
        return PassiveAuthentication("invalid", "EF.SOD signature has no signed attributes")
    attrs = {a["type"].native: a["values"][0].native for a in signed_attrs}
    if attrs.get("message_digest") != _HASHES[digest](sod.econtent).digest():
        return PassiveAuthentication("invalid", "EF.SOD message digest does not match")
    ds = _signer_certificate(sod)
    if ds is None:
        return PassiveAuthentication("invalid", "document signer certificate not found")
    subject = ds.subject.rfc4514_string()
    scheme = si["signature_algorithm"].signature_algo
    try:
        signed = signed_attrs.untag().dump()  # DER of the SET OF, as signed
        _verify_signature(ds, si["signature"].native, signed, digest, scheme)
    except (InvalidSignature, ValueError, KeyError) as exc:
        return PassiveAuthentication(
            "invalid", f"EF.SOD signature does not verify ({type(exc).__name__})", subject
        )
    if not ds.not_valid_before_utc <= at <= ds.not_valid_after_utc:
        return PassiveAuthentication(
            "invalid", "document signer certificate is outside its validity period", subject
        )
    candidates = trust.issuers_of(ds)
    if not candidates:
        return PassiveAuthentication("unknown_csca", "no trusted CSCA issued the signer", subject)
    for csca in candidates:
        try:
            ds.verify_directly_issued_by(csca)
        except (InvalidSignature, ValueError, TypeError):
            continue
        if not csca.not_valid_before_utc <= at <= csca.not_valid_after_utc:
            return PassiveAuthentication("invalid", "CSCA certificate has expired", subject)
        return PassiveAuthentication("valid", "", subject, tuple(sorted(groups)))
    return PassiveAuthentication(
        "invalid", "document signer certificate is not signed by its CSCA", subject
    )


def _signer_certificate(sod: SecurityObject) -> x509.Certificate | None:
    sid = sod.signer_info["sid"]
    for cert in sod.certificates:
        if sid.name == "issuer_and_serial_number":
            ias = sid.chosen
            if cert.serial_number == ias["serial_number"].native and (
                cert.issuer.public_bytes() == ias["issuer"].dump()
            ):
                return cert
        else:
            try:
                ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
            except x509.ExtensionNotFound:
                continue
            if ski.value.digest == sid.chosen.native:
                return cert
    return None
