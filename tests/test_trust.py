"""Trust material and passive authentication on the shapes real documents and ICAO master
lists take: master lists holding a certificate ``cryptography`` refuses, master-list CMS
signatures, document signers and CSCAs with explicit EC domain parameters (and a curve
``cryptography`` lacks), issuer names re-ordered or re-encoded, subjectKeyIdentifier
SignerInfos, legacy EF.SOD content types, malformed file headers, and the TD2 MRZ.

Every certificate, master list and EF.SOD here is built by the test (a test PKI, never a real
country's keys)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import secrets
from collections.abc import Callable
from pathlib import Path

import pytest
from asn1crypto import algos, cms
from asn1crypto import core as asn1
from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices import cli as devices_cli
from devices.icao import ec as curves
from devices.icao import lds, mrz, tlv

NOW = dt.datetime.now(dt.UTC)
Signer = Callable[[bytes], bytes]  # DER ECDSA-with-SHA-256 signature of the data


# ------------------------------------------------------------------------- test PKI
def _name(country: str, cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, country),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _signer(key: ec.EllipticCurvePrivateKey) -> Signer:
    return lambda data: key.sign(data, ec.ECDSA(hashes.SHA256()))


def _certificate(
    subject: x509.Name,
    key: ec.EllipticCurvePublicKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    ca: bool,
    days: tuple[int, int] = (-30, 3650),
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW + dt.timedelta(days=days[0]))
        .not_valid_after(NOW + dt.timedelta(days=days[1]))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    if ca:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=True, path_length=0), critical=True
        )
    return builder.sign(issuer_key, hashes.SHA256())


class CA:
    """A CSCA: its key and self-signed certificate."""

    def __init__(self, country: str, curve: ec.EllipticCurve | None = None, cn: str = "") -> None:
        self.key = ec.generate_private_key(curve or ec.SECP256R1())
        self.name = _name(country, cn or f"CSCA {country} (test)")
        self.cert = _certificate(self.name, self.key.public_key(), self.name, self.key, ca=True)
        self.der = self.cert.public_bytes(serialization.Encoding.DER)

    def issue(
        self, cn: str, curve: ec.EllipticCurve | None = None, days: tuple[int, int] = (-30, 3650)
    ) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
        """A document / master-list signer: its key and DER certificate."""
        key = ec.generate_private_key(curve or ec.SECP256R1())
        country = self.name.get_attributes_for_oid(NameOID.COUNTRY_NAME)[0].value
        cert = _certificate(
            _name(str(country), cn), key.public_key(), self.name, self.key, False, days
        )
        return key, cert.public_bytes(serialization.Encoding.DER)


def _rewrite(
    der: bytes,
    sign: Signer,
    issuer: asn1_x509.Name | None = None,
    spki: asn1_keys.PublicKeyInfo | None = None,
) -> bytes:
    """``der`` with another issuer name and/or public key, re-signed (ECDSA SHA-256)."""
    cert = asn1_x509.Certificate.load(der)
    tbs = cert["tbs_certificate"].copy()
    if issuer is not None:
        tbs["issuer"] = issuer
    if spki is not None:
        tbs["subject_public_key_info"] = spki
    return asn1_x509.Certificate(
        {
            "tbs_certificate": tbs,
            "signature_algorithm": {"algorithm": "sha256_ecdsa"},
            "signature_value": sign(tbs.dump(force=True)),
        }
    ).dump(force=True)


def _explicit_spki(curve: curves.Curve, point: bytes) -> asn1_keys.PublicKeyInfo:
    """A SubjectPublicKeyInfo giving ``curve`` as explicit (specified) ECParameters."""
    params = asn1_keys.ECDomainParameters.load(curves.curve_parameters(curve, explicit=True))
    assert params.name == "specified"
    return asn1_keys.PublicKeyInfo(
        {"algorithm": {"algorithm": "ec", "parameters": params}, "public_key": point}
    )


def _point(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


# --------------------------------------------------------------------------- documents
TD1 = (
    "I<UTOD231458907<<<<<<<<<<<<<<<\n7408122F1204159UTO<<<<<<<<<<<6\nERIKSSON<<ANNA<MARIA<<<<<<<<<<"
)
TD2 = "I<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<\nD231458907UTO7408122F1204159<<<<<<<6"  # Part 6
JPEG = b"\xff\xd8\xff\xe0" + bytes(200) + b"\xff\xd9"


def _groups(mrz_text: str = TD1) -> dict[int, bytes]:
    dg1 = tlv.encode(0x61, tlv.encode(0x5F1F, "".join(mrz_text.split()).encode("ascii")))
    bit = tlv.encode(0x7F60, tlv.encode(0xA1, b"") + tlv.encode(0x5F2E, JPEG))
    dg2 = tlv.encode(0x75, tlv.encode(0x7F61, tlv.encode(0x02, b"\x01") + bit))
    return {1: dg1, 2: dg2}


def _sod(
    groups: dict[int, bytes],
    ds_der: bytes,
    sign: Signer,
    content_type: str = lds.LDS_SECURITY_OBJECT,
    by_key_id: bool = False,
    issuer: asn1_x509.Name | None = None,
    econtent: bytes | None = None,
) -> bytes:
    """EF.SOD over ``groups`` signed by ``sign``; the SignerInfo names the DS by issuer and
    serial (``issuer`` replaces the issuer name as the certificate has it) or by key id."""
    lso = econtent or (
        lds.LDSSecurityObject(
            {
                "version": 0,
                "hash_algorithm": {"algorithm": "sha256"},
                "data_group_hash_values": [
                    {"data_group_number": n, "data_group_hash_value": hashlib.sha256(raw).digest()}
                    for n, raw in sorted(groups.items())
                ],
            }
        ).dump()
    )
    ds = asn1_x509.Certificate.load(ds_der)
    attrs = cms.CMSAttributes(
        [
            {"type": "content_type", "values": [content_type]},
            {"type": "message_digest", "values": [hashlib.sha256(lso).digest()]},
        ]
    )
    if by_key_id:
        sid = cms.SignerIdentifier(name="subject_key_identifier", value=ds.key_identifier)
    else:
        sid = cms.SignerIdentifier(
            name="issuer_and_serial_number",
            value={"issuer": issuer or ds.issuer, "serial_number": ds.serial_number},
        )
    signed = cms.SignedData(
        {
            "version": "v3",
            "digest_algorithms": [{"algorithm": "sha256"}],
            "encap_content_info": {
                "content_type": content_type,
                "content": asn1.ParsableOctetString(lso),
            },
            "certificates": [ds],
            "signer_infos": [
                {
                    "version": "v3" if by_key_id else "v1",
                    "sid": sid,
                    "digest_algorithm": {"algorithm": "sha256"},
                    "signed_attrs": attrs,
                    "signature_algorithm": algos.SignedDigestAlgorithm(
                        {"algorithm": "sha256_ecdsa"}
                    ),
                    "signature": sign(attrs.dump()),
                }
            ],
        }
    )
    return tlv.encode(
        0x77, cms.ContentInfo({"content_type": "signed_data", "content": signed}).dump()
    )


def _pa(sod: bytes, groups: dict[int, bytes], *csca: bytes) -> lds.PassiveAuthentication:
    trust = lds.TrustStore(x509.load_der_x509_certificate(c) for c in csca)
    return lds.passive_authentication(lds.parse_sod(sod), groups, trust)


@pytest.fixture(scope="module")
def csca() -> CA:
    return CA("UT")


# ------------------------------------------------------------------------- master lists
def _non_der(der: bytes) -> bytes:
    """``der`` with its basicConstraints cA BOOLEAN TRUE encoded 01 instead of FF: BER, not
    DER (seen in real master lists)."""
    at = der.index(bytes.fromhex("0101ff"))
    return der[:at] + bytes.fromhex("010101") + der[at + 3 :]


def _master_list(certs: list[bytes], signer_der: bytes, sign: Signer, tamper: str = "") -> bytes:
    """CMS SignedData (id-icao-cscaMasterList) over CscaMasterList {0, certs}."""
    content = lds.CscaMasterList(
        {"version": 0, "cert_list": [asn1.Any.load(c) for c in certs]}
    ).dump()
    attrs = cms.CMSAttributes(
        [
            {"type": "content_type", "values": [lds.ID_ICAO_CSCA_MASTER_LIST]},
            {"type": "message_digest", "values": [hashlib.sha256(content).digest()]},
        ]
    )
    signature = sign(attrs.dump())
    if tamper == "signature":
        signature = sign(attrs.dump() + b"x")
    if tamper == "content":  # a certificate list changed after signing
        content = lds.CscaMasterList(
            {"version": 0, "cert_list": [asn1.Any.load(c) for c in certs[:-1]]}
        ).dump()
    signer = asn1_x509.Certificate.load(signer_der)
    signed = cms.SignedData(
        {
            "version": "v3",
            "digest_algorithms": [{"algorithm": "sha256"}],
            "encap_content_info": {
                "content_type": lds.ID_ICAO_CSCA_MASTER_LIST,
                "content": asn1.ParsableOctetString(content),
            },
            "certificates": [signer],
            "signer_infos": [
                {
                    "version": "v1",
                    "sid": cms.SignerIdentifier(
                        name="issuer_and_serial_number",
                        value={"issuer": signer.issuer, "serial_number": signer.serial_number},
                    ),
                    "digest_algorithm": {"algorithm": "sha256"},
                    "signed_attrs": attrs,
                    "signature_algorithm": {"algorithm": "sha256_ecdsa"},
                    "signature": signature,
                }
            ],
        }
    )
    return cms.ContentInfo({"content_type": "signed_data", "content": signed}).dump()


@pytest.fixture(scope="module")
def countries() -> dict[str, CA]:
    return {c: CA(c) for c in ("AA", "BB", "CC", "DD")}


def _position(ml: bytes, der: bytes) -> int:
    """Where ``der`` sits in a master list's certificate list (a SET OF: DER sorts it)."""
    content = cms.ContentInfo.load(ml)["content"]["encap_content_info"]["content"].parsed
    items = [item.dump() for item in lds.CscaMasterList.load(content.dump())["cert_list"]]
    return items.index(der)


@pytest.fixture
def trust_folder(tmp_path: Path, countries: dict[str, CA]) -> tuple[Path, int]:
    """A master list from AA (signed by AA's master-list signer, AA's CSCA inside) holding
    AA, BB, CC and a DD certificate that is not DER; a PEM file with a good certificate and
    a non-DER one; and a file that is nothing. Returns the folder and the position of the
    non-DER certificate in the master list."""
    aa = countries["AA"]
    signer_key, signer_der = aa.issue("Master List Signer AA")
    bad = _non_der(countries["DD"].der)
    certs = [aa.der, countries["BB"].der, bad, countries["CC"].der]
    ml = _master_list(certs, signer_der, _signer(signer_key))
    assert bad in ml  # the non-DER bytes travel as they are
    (tmp_path / "AA_masterlist.ml").write_bytes(ml)
    pem = countries["BB"].cert.public_bytes(serialization.Encoding.PEM)
    pem += b"-----BEGIN CERTIFICATE-----\n"
    pem += base64.encodebytes(_non_der(countries["CC"].der))
    pem += b"-----END CERTIFICATE-----\n"
    (tmp_path / "more.pem").write_bytes(pem)
    (tmp_path / "README.txt").write_bytes(b"not a certificate")
    return tmp_path, _position(ml, bad)


def test_cryptography_refuses_the_non_der_certificate(countries):
    # the real-world shape this file is about: one such certificate discarded whole lists
    with pytest.raises(ValueError):
        x509.load_der_x509_certificate(_non_der(countries["DD"].der))


def test_master_list_keeps_good_certificates_and_reports_the_bad_one(trust_folder, countries):
    folder, bad = trust_folder
    store = lds.TrustStore.from_folder(folder)
    report = store.report
    loaded = {c.public_bytes(serialization.Encoding.DER) for c in store.certificates}
    assert loaded == {countries[c].der for c in ("AA", "BB", "CC")}  # BB once, not twice
    assert report.certificates == 3 and report.countries == {"AA": 1, "BB": 1, "CC": 1}
    by_file = {f.name: f for f in report.files}
    ml = by_file["AA_masterlist.ml"]
    assert (ml.kind, ml.certificates, ml.skipped) == ("master list", 3, 1)
    assert ml.signature == lds.ML_VERIFIED and "CSCA AA" in ml.signature_reason
    assert "Master List Signer AA" in ml.signer
    assert (by_file["more.pem"].kind, by_file["more.pem"].certificates) == ("PEM", 1)
    assert by_file["README.txt"].kind == "unreadable"
    skipped = {(s.file, s.index): s for s in report.skipped}
    assert set(skipped) == {("AA_masterlist.ml", bad), ("more.pem", 1), ("README.txt", None)}
    assert skipped["AA_masterlist.ml", bad].subject == "C=DD, CN=CSCA DD (test)"
    assert "cryptography refuses it" in skipped["AA_masterlist.ml", bad].reason
    assert skipped["more.pem", 1].subject == "C=CC, CN=CSCA CC (test)"
    assert "neither a certificate nor an ICAO master list" in skipped["README.txt", None].reason
    # the trust store works for passive authentication
    assert store.issuers_of(countries["BB"].cert) == [countries["BB"].cert]


@pytest.mark.parametrize(
    ("tamper", "with_csca", "status", "reason", "trusted"),
    [
        ("", False, lds.ML_NO_CSCA, "no loaded CSCA", 2),
        ("signature", True, lds.ML_INVALID, "does not verify", 0),
        ("content", True, lds.ML_INVALID, "message digest", 0),
    ],
)
def test_master_list_signature_states(
    tmp_path, countries, tamper, with_csca, status, reason, trusted
):
    aa = countries["AA"]
    signer_key, signer_der = aa.issue("Master List Signer AA")
    certs = [countries["BB"].der, countries["CC"].der, aa.der]
    if not with_csca:
        certs = certs[:2]
    (tmp_path / "list.ml").write_bytes(_master_list(certs, signer_der, _signer(signer_key), tamper))
    store = lds.TrustStore.from_folder(tmp_path)
    (ml,) = store.report.master_lists
    assert ml.signature == status and reason in ml.signature_reason
    assert len(store.certificates) == trusted
    if status == lds.ML_INVALID:  # its certificates are reported, not trusted
        assert {s.reason for s in store.report.skipped} == {
            "in a master list whose signature is invalid"
        }


def test_master_list_signer_checked_against_a_csca_from_another_file(tmp_path, countries):
    aa = countries["AA"]
    signer_key, signer_der = aa.issue("Master List Signer AA")
    (tmp_path / "list.ml").write_bytes(
        _master_list([countries["BB"].der], signer_der, _signer(signer_key))
    )
    (tmp_path / "aa.der").write_bytes(aa.der)
    (ml,) = lds.TrustStore.from_folder(tmp_path).report.master_lists
    assert ml.signature == lds.ML_VERIFIED and "from aa.der" in ml.signature_reason
    # a signer whose named CSCA key did not sign it: the list is not trusted
    forged = _rewrite(signer_der, _signer(countries["BB"].key))
    (tmp_path / "list.ml").write_bytes(
        _master_list([countries["BB"].der], forged, _signer(signer_key))
    )
    store = lds.TrustStore.from_folder(tmp_path)
    assert store.report.master_lists[0].signature == lds.ML_INVALID
    assert len(store.certificates) == 1  # aa.der only


def test_trust_check_command(trust_folder, tmp_path, capsys):
    folder, bad = trust_folder
    assert devices_cli.main(["trust", "check", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "3 distinct CSCA certificates" in out and "AA 1, BB 1, CC 1" in out
    assert "AA_masterlist.ml: signature verified" in out
    assert f"AA_masterlist.ml #{bad} [C=DD, CN=CSCA DD (test)]: cryptography refuses it" in out
    assert "README.txt: neither a certificate nor an ICAO master list" in out
    assert devices_cli.main(["trust", "check", "--json", str(folder)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["certificates"] == 3 and len(data["skipped"]) == 3
    assert {f["name"]: f["signature"] for f in data["files"]}["AA_masterlist.ml"] == (
        "signature verified"
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "junk.der").write_bytes(b"\x30\x03\x02\x01\x01")
    assert devices_cli.main(["trust", "check", str(empty)]) == 1
    assert "junk.der" in capsys.readouterr().out
    assert devices_cli.main(["trust", "check", str(tmp_path / "absent")]) == 2


def test_in_memory_trust_store_keeps_its_signature(csca):
    store = lds.TrustStore([csca.cert])
    assert store.certificates == [csca.cert] and store.report.certificates == 1
    assert lds.TrustStore().report.certificates == 0


# ----------------------------------------------------------- explicit EC parameters
def _explicit_ds(
    ca: CA, sign_with: Signer | None = None
) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    """A DS on brainpoolP256r1 whose SubjectPublicKeyInfo gives the curve as explicit
    parameters (as several European countries issue), re-signed by the CSCA."""
    key, der = ca.issue("Document Signer (explicit brainpool)", ec.BrainpoolP256R1())
    spki = _explicit_spki(curves.CURVES["brainpoolP256r1"], _point(key))
    return key, _rewrite(der, sign_with or _signer(ca.key), spki=spki)


def test_document_signer_with_explicit_brainpool_parameters_verifies(csca):
    key, ds = _explicit_ds(csca)
    with pytest.raises(UnsupportedAlgorithm):  # what escaped passive authentication before
        x509.load_der_x509_certificate(ds).public_key()
    groups = _groups()
    sod = _sod(groups, ds, _signer(key))
    result = _pa(sod, groups, csca.der)
    assert result.status == "valid", result.reason
    assert "explicit brainpool" in result.document_signer
    # a wrong signature with such a key is still caught
    other = ec.generate_private_key(ec.BrainpoolP256R1())
    assert _pa(_sod(groups, ds, _signer(other)), groups, csca.der).status == "invalid"


def test_csca_with_explicit_brainpool_parameters_verifies_its_signer():
    ca = CA("EX", ec.BrainpoolP256R1())
    spki = _explicit_spki(curves.CURVES["brainpoolP256r1"], _point(ca.key))
    csca_der = _rewrite(ca.der, _signer(ca.key), spki=spki)
    with pytest.raises(UnsupportedAlgorithm):
        x509.load_der_x509_certificate(csca_der).public_key()
    ds_key, ds = ca.issue("Document Signer EX")
    groups = _groups()
    assert _pa(_sod(groups, ds, _signer(ds_key)), groups, csca_der).status == "valid"
    # and a DS with explicit parameters under it
    key, explicit_ds = _explicit_ds(ca)
    assert _pa(_sod(groups, explicit_ds, _signer(key)), groups, csca_der).status == "valid"


def _ecdsa_sign(curve: curves.Curve, d: int) -> Signer:
    """ECDSA with SHA-256 on a curve cryptography lacks (test side, not constant time)."""

    def sign(data: bytes) -> bytes:
        e = int.from_bytes(hashlib.sha256(data).digest(), "big")
        e >>= max(0, 256 - curve.n.bit_length())
        while True:
            k = secrets.randbelow(curve.n - 1) + 1
            point = curve.multiply(k)
            assert point is not None
            r = point[0] % curve.n
            s = pow(k, -1, curve.n) * (e + r * d) % curve.n
            if r and s:
                return algos.DSASignature({"r": r, "s": s}).dump()

    return sign


@pytest.mark.parametrize("explicit", [False, True])
def test_document_signer_on_a_curve_cryptography_lacks(csca, explicit):
    curve = curves.CURVES["brainpoolP224r1"]
    d = secrets.randbelow(curve.n - 1) + 1
    point = curve.encode(curve.multiply(d))
    if explicit:
        spki = _explicit_spki(curve, point)
    else:
        spki = asn1_keys.PublicKeyInfo(
            {
                "algorithm": {
                    "algorithm": "ec",
                    "parameters": asn1_keys.ECDomainParameters(name="named", value=curve.oid),
                },
                "public_key": point,
            }
        )
    _, placeholder = csca.issue("Document Signer (brainpoolP224r1)")
    ds = _rewrite(placeholder, _signer(csca.key), spki=spki)
    groups = _groups()
    result = _pa(_sod(groups, ds, _ecdsa_sign(curve, d)), groups, csca.der)
    assert result.status == "valid", result.reason
    wrong = _ecdsa_sign(curve, d + 1)
    assert _pa(_sod(groups, ds, wrong), groups, csca.der).status == "invalid"


def test_explicit_parameters_matching_no_curve_are_unknown(csca):
    key, der = csca.issue("Document Signer (odd curve)", ec.BrainpoolP256R1())
    odd = curves.CURVES["brainpoolP256r1"]
    odd = curves.Curve("odd", odd.p, odd.a, odd.b, odd.gx, odd.gy, odd.n - 2, odd.h)
    ds = _rewrite(der, _signer(csca.key), spki=_explicit_spki(odd, _point(key)))
    groups = _groups()
    result = _pa(_sod(groups, ds, _signer(key)), groups, csca.der)
    assert result.status == "unknown" and "named curve" in result.reason
    assert "odd curve" in result.document_signer


# --------------------------------------------------------------------- names, key ids
def _asn1_name(rdns: list[tuple[str, str, str]]) -> asn1_x509.Name:
    """A name with chosen RDN order and string types: (attribute, value, "printable" or
    "utf8")."""
    seq = [
        asn1_x509.RelativeDistinguishedName(
            [
                asn1_x509.NameTypeAndValue(
                    {
                        "type": kind,
                        "value": asn1_x509.DirectoryString(
                            name=f"{string_type}_string", value=value
                        ),
                    }
                )
            ]
        )
        for kind, value, string_type in rdns
    ]
    return asn1_x509.Name(name="", value=asn1_x509.RDNSequence(seq))


def test_names_compare_as_rfc_5280_does(csca):
    reordered = _asn1_name(
        [("common_name", "  csca   UT (TEST) ", "printable"), ("country_name", "UT", "printable")]
    )
    assert reordered.dump() != csca.cert.subject.public_bytes()
    assert lds.names_match(reordered, csca.cert.subject)
    assert lds.names_match(csca.cert.subject.public_bytes(), csca.cert.subject)
    assert not lds.names_match(_asn1_name([("common_name", "CSCA XX", "utf8")]), csca.cert.subject)
    assert not lds.names_match(b"\x30\x01", csca.cert.subject)


def test_signer_info_naming_the_issuer_in_another_order_and_encoding(csca):
    key, ds = csca.issue("Document Signer UT")
    groups = _groups()
    issuer = _asn1_name(
        [("common_name", "CSCA  ut (test)", "printable"), ("country_name", "UT", "printable")]
    )
    result = _pa(_sod(groups, ds, _signer(key), issuer=issuer), groups, csca.der)
    assert result.status == "valid", result.reason
    other = _asn1_name([("country_name", "UT", "printable"), ("common_name", "CSCA XX", "utf8")])
    result = _pa(_sod(groups, ds, _signer(key), issuer=other), groups, csca.der)
    assert result.status == "invalid" and "not found" in result.reason


def test_document_signer_whose_issuer_is_encoded_unlike_the_csca_subject(csca):
    key, ds = csca.issue("Document Signer UT")
    issuer = _asn1_name(
        [("country_name", "UT", "printable"), ("common_name", "CSCA UT (TEST)", "printable")]
    )
    ds = _rewrite(ds, _signer(csca.key), issuer=issuer)
    trust = lds.TrustStore([csca.cert])
    assert trust.issuers_of(x509.load_der_x509_certificate(ds)) == [csca.cert]
    groups = _groups()
    assert _pa(_sod(groups, ds, _signer(key)), groups, csca.der).status == "valid"


def test_subject_key_identifier_signer_info(csca):
    key, ds = csca.issue("Document Signer UT")
    groups = _groups()
    result = _pa(_sod(groups, ds, _signer(key), by_key_id=True), groups, csca.der)
    assert result.status == "valid", result.reason


def test_key_identifiers_pick_the_csca_among_same_named_ones():
    old, new = CA("KR"), CA("KR")  # a key rollover: two CSCAs of one name
    key, ds = new.issue("Document Signer KR")
    trust = lds.TrustStore([old.cert, new.cert])
    assert trust.issuers_of(x509.load_der_x509_certificate(ds)) == [new.cert, old.cert]
    groups = _groups()
    assert _pa(_sod(groups, ds, _signer(key)), groups, old.der, new.der).status == "valid"
    assert _pa(_sod(groups, ds, _signer(key)), groups, old.der).status == "invalid"


# --------------------------------------------------------------- EF.SOD content types
@pytest.mark.parametrize("content_type", sorted(lds.LEGACY_SECURITY_OBJECTS))
def test_legacy_sod_content_types_are_accepted(csca, content_type):
    key, ds = csca.issue("Document Signer UT")
    groups = _groups()
    raw = _sod(groups, ds, _signer(key), content_type=content_type)
    sod = lds.parse_sod(raw)
    assert sod.content_type == content_type and sorted(sod.hashes) == [1, 2]
    result = lds.passive_authentication(sod, groups, lds.TrustStore([csca.cert]))
    assert result.status == "valid", result.reason


def test_other_sod_content_types_are_refused(csca):
    key, ds = csca.issue("Document Signer UT")
    with pytest.raises(lds.LDSError, match="does not sign an LDS security object"):
        lds.parse_sod(_sod(_groups(), ds, _signer(key), content_type="1.2.3.4"))
    not_lso = b"\x30\x03\x02\x01\x01"  # id-data, but not a security object
    with pytest.raises(lds.LDSError, match="not an LDS security object"):
        lds.parse_sod(
            _sod(_groups(), ds, _signer(key), content_type="1.2.840.113549.1.7.1", econtent=not_lso)
        )


# ------------------------------------------------------------------- never raises
def test_unsupported_signature_algorithm_is_unknown(csca):
    key, ds = csca.issue("Document Signer UT")
    groups = _groups()
    raw = _sod(groups, ds, _signer(key))
    sod = lds.parse_sod(raw)
    si = sod.signer_info.copy()
    si["signature_algorithm"] = algos.SignedDigestAlgorithm({"algorithm": "1.2.3.4.5"})
    odd = lds.SecurityObject(sod.hash_algorithm, sod.hashes, sod.econtent, si, sod.certificates)
    result = lds.passive_authentication(odd, groups, lds.TrustStore([csca.cert]))
    assert result.status == "unknown" and "1.2.3.4.5" in result.reason


_SOD_CACHE: dict[str, tuple[bytes, dict[int, bytes], x509.Certificate]] = {}


@pytest.fixture(scope="module")
def explicit_document(csca):
    key, ds = _explicit_ds(csca)
    groups = _groups()
    _SOD_CACHE["sod"] = (_sod(groups, ds, _signer(key)), groups, csca.cert)
    return _SOD_CACHE["sod"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_passive_authentication_never_raises_on_mutated_sods(explicit_document, data):
    raw, groups, csca_cert = explicit_document
    mutated = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 3))):
        mutated[data.draw(st.integers(4, len(mutated) - 1))] = data.draw(st.integers(0, 255))
    try:
        sod = lds.parse_sod(bytes(mutated))
    except lds.LDSError:
        return
    result = lds.passive_authentication(sod, groups, lds.TrustStore([csca_cert]))
    assert result.status in ("valid", "invalid", "unknown_csca", "unknown")


# ----------------------------------------------------------------- malformed headers
MALFORMED = [b"\x77\x85\x00\x00\x00\x00\x10", b"\xff\x01\x00", b"\x00\x01\x00"]


@pytest.mark.parametrize("data", MALFORMED)
@pytest.mark.parametrize(
    "parser", [lds.parse_sod, lds.parse_dg1, lds.parse_dg2, lds.parse_com, lds.header_length]
)
def test_malformed_file_headers_are_lds_errors(parser, data):
    with pytest.raises(lds.LDSError):
        parser(data)


@pytest.mark.parametrize("data", MALFORMED)
def test_tlv_header_length_raises_its_own_error_only(data):
    with pytest.raises(tlv.TLVError) as caught:  # a CardError and a ValueError
        tlv.header_length(data)
    assert isinstance(caught.value, ValueError)


# ------------------------------------------------------------------------------ TD2
def test_td2_specimen_of_icao_part_6():
    m = mrz.parse(TD2)
    assert (m.document_type, m.issuing_state, m.document_number) == ("I", "UTO", "D23145890")
    assert (m.primary_identifier, m.secondary_identifier) == ("ERIKSSON", "ANNA MARIA")
    assert (m.nationality, m.sex, m.optional_data) == ("UTO", "F", "")
    assert m.birth_date == dt.date(1974, 8, 12) and m.expiry_date == dt.date(2012, 4, 15)
    assert m.access_key().information == "D23145890774081221204159"
    parsed = lds.parse_dg1(_groups(TD2)[1])
    assert parsed == m and len("".join(TD2.split())) == 72


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (TD2.replace("D231458907", "D231458908"), "document number"),
        (TD2.replace("7408122F", "7408123F"), "date of birth"),
        (TD2.replace("1204159<", "1204158<"), "date of expiry"),
        (TD2[:-1] + "5", "composite"),
        (TD2[:-2], "2 lines of 36"),
    ],
)
def test_td2_check_digits(text, message):
    with pytest.raises(mrz.MRZError, match=message):
        mrz.parse(text)
    if message != "2 lines of 36":
        with pytest.raises(lds.LDSError, match=message):
            lds.parse_dg1(_groups(text)[1])


def test_td2_long_document_number_and_visa():
    number = "D231458907AB"  # 12 characters: the rest and its check digit in optional data
    l2 = "D23145890<UTO7408122F1204159" + "7AB" + mrz.check_digit(number) + "<<<"
    l2 += mrz.check_digit(l2[0:10] + l2[13:20] + l2[21:35])
    m = mrz.parse(TD2.splitlines()[0] + "\n" + l2)
    assert m.document_number == number and m.optional_data == ""
    # a visa of the TD2 size (MRV-B, Part 7): 8 characters of optional data, no composite
    l2 = "L8988901C" + mrz.check_digit("L8988901C") + "XXX" + "400907" + mrz.check_digit("400907")
    l2 += "M" + "961210" + mrz.check_digit("961210") + "ZE184226"
    visa = mrz.parse("V<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<\n" + l2)
    assert (visa.document_type, visa.optional_data) == ("V", "ZE184226")


@settings(max_examples=100, deadline=None)
@given(
    number=st.from_regex(r"[A-Z0-9]{1,9}", fullmatch=True),
    surname=st.from_regex(r"[A-Z]{1,8}( [A-Z]{1,6})?", fullmatch=True),
    given_names=st.from_regex(r"[A-Z]{1,10}", fullmatch=True),
    birth=st.dates(dt.date(1930, 1, 1), dt.date(2020, 12, 31)),
    expiry=st.dates(dt.date(2025, 1, 1), dt.date(2040, 12, 31)),
    sex=st.sampled_from("MF<"),
    optional=st.from_regex(r"[A-Z0-9]{0,7}", fullmatch=True),
)
def test_td2_round_trip(number, surname, given_names, birth, expiry, sex, optional):
    text = mrz.td2(
        number,
        surname,
        given_names,
        birth.strftime("%y%m%d"),
        sex,
        expiry.strftime("%y%m%d"),
        optional_data=optional,
    )
    m = mrz.parse(text)
    assert (m.document_number, m.date_of_birth, m.date_of_expiry) == (
        number,
        birth.strftime("%y%m%d"),
        expiry.strftime("%y%m%d"),
    )
    assert m.primary_identifier == surname and m.secondary_identifier == given_names
    assert m.optional_data == optional and m.sex == sex
    assert lds.parse_dg1(_groups(text)[1]) == m
