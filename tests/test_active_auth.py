"""Active Authentication (ICAO 9303-11, 6.1): DG15 parsing, INTERNAL AUTHENTICATE against an
emulated chip (plain and through 3DES secure messaging), clones and refusals, published
ISO/IEC 9796-2 known answers, and fuzzing of the parser and of the verifier."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable

import pytest
from asn1crypto import keys as asn1_keys
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa
from cryptography.hazmat.primitives.asymmetric import utils as asym_utils
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices.exceptions import CardError, CardRemoved
from devices.icao import active as aa
from devices.icao import ec as curves
from devices.icao import secure, tlv

CHALLENGE = bytes.fromhex("0123456789ABCDEF")


def fuzz(cases: int) -> settings:
    """``cases`` generated cases, the same every run."""
    return settings(
        max_examples=cases,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


# ------------------------------------------------------------------------ emulated chip
class Chip:
    """The card side of INTERNAL AUTHENTICATE: signs what it is sent with ``key``, or
    answers ``sw``; records the command APDUs."""

    def __init__(
        self,
        key: aa.PrivateKey,
        signature_algorithm: str | None = None,
        hash_name: str | None = None,
        sw: int = 0x9000,
        challenge_filter: Callable[[bytes], bytes] = lambda c: c,
    ) -> None:
        self.key, self.algorithm, self.hash_name, self.sw = key, signature_algorithm, hash_name, sw
        self.challenge_filter = challenge_filter
        self.apdus: list[bytes] = []

    def __call__(self, apdu: bytes) -> tuple[bytes, int]:
        self.apdus.append(apdu)
        cla, ins, p1, p2, data, _ = secure.split_command(apdu)
        assert (cla, ins, p1, p2) == (0x00, 0x88, 0x00, 0x00) and data is not None
        if self.sw != 0x9000:
            return b"", self.sw
        signed = self.challenge_filter(data)
        return aa.sign_challenge(self.key, signed, self.algorithm, hash_name=self.hash_name), 0x9000


@pytest.fixture(scope="module")
def rsa_keys() -> dict[int, rsa.RSAPrivateKey]:
    return {bits: aa.generate_key("rsa", bits=bits) for bits in (1024, 2048, 3072)}


@pytest.fixture(scope="module")
def ec_keys() -> dict[str, ec.EllipticCurvePrivateKey]:
    names = ("secp256r1", "brainpoolP256r1", "brainpoolP384r1")
    return {name: aa.generate_key("ec", curve=name) for name in names}


# -------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("bits", [1024, 2048])
@pytest.mark.parametrize("hash_name", [None, "sha256"])
def test_rsa_round_trip(rsa_keys, bits, hash_name):
    key = rsa_keys[bits]
    chip = Chip(key, hash_name=hash_name)
    result = aa.active_authentication(chip, aa.dg15(key.public_key()), challenge=CHALLENGE)
    assert result.passed, result
    assert result.algorithm.startswith(f"RSA-{bits} ISO/IEC 9796-2")
    assert ("SHA256 explicit trailer" if hash_name else "SHA1 trailer BC") in result.algorithm
    # 00 88 00 00, Lc 08, the challenge, Le 00
    assert chip.apdus == [bytes.fromhex("0088000008") + CHALLENGE + b"\x00"]


def test_rsa_signature_is_what_icao_describes(rsa_keys):
    """Trailer BC: 6A || M1 (106 random bytes for RSA-1024) || SHA-1(M1 || challenge) || BC."""
    key = rsa_keys[1024]
    numbers = key.public_key().public_numbers()
    signature = aa.sign_challenge(key, CHALLENGE, None)
    assert len(signature) == 128
    f = pow(int.from_bytes(signature, "big"), numbers.e, numbers.n).to_bytes(128, "big")
    assert f[0] == 0x6A and f[-1] == 0xBC
    assert f[-21:-1] == hashlib.sha1(f[1:107] + CHALLENGE).digest()
    explicit = aa.sign_challenge(key, CHALLENGE, None, hash_name="sha256")
    f = pow(int.from_bytes(explicit, "big"), numbers.e, numbers.n).to_bytes(128, "big")
    assert f[0] == 0x6A and f[-2:] == b"\x34\xcc"  # SHA-256's ISO/IEC 10118-3 identifier
    assert f[-34:-2] == hashlib.sha256(f[1:-34] + CHALLENGE).digest()
    assert aa.iso9796_2_capacity(1024) == 106


def test_rsa_3072_asks_for_an_extended_answer(rsa_keys):
    key = rsa_keys[3072]
    chip = Chip(key)
    result = aa.active_authentication(chip, aa.dg15(key.public_key()), challenge=CHALLENGE)
    assert result.passed, result
    assert chip.apdus == [bytes.fromhex("00880000000008") + CHALLENGE + b"\x00\x00"]


@pytest.mark.parametrize(
    ("curve", "algorithm"),
    [
        ("secp256r1", aa.ECDSA_PLAIN_SHA256),
        ("brainpoolP256r1", aa.ECDSA_PLAIN_SHA256),
        ("brainpoolP384r1", aa.ECDSA_PLAIN_SHA384),
        ("brainpoolP256r1", "1.2.840.10045.4.3.2"),  # X9.62 ecdsa-with-SHA256
    ],
)
def test_ecdsa_round_trip(ec_keys, curve, algorithm):
    key = ec_keys[curve]
    chip = Chip(key, algorithm)
    result = aa.active_authentication(chip, aa.dg15(key.public_key()), algorithm)
    assert result.passed, result
    assert result.algorithm.startswith(f"ECDSA {curve}")
    signature = aa.sign_challenge(key, CHALLENGE, algorithm)
    assert len(signature) == 2 * ((key.curve.key_size + 7) // 8)  # plain r || s


def test_ecdsa_der_signature_is_accepted(ec_keys):
    """Some chips answer X9.62 DER instead of TR-03111 plain: tolerated, and said so."""
    key = ec_keys["secp256r1"]
    der = key.sign(CHALLENGE, ec.ECDSA(hashes.SHA256()))
    parsed = aa.parse_dg15(aa.dg15(key.public_key()))
    result = aa.verify_signature(parsed, CHALLENGE, der, aa.ECDSA_PLAIN_SHA256)
    assert result.passed and "DER" in result.algorithm


def _explicit_spki(curve: curves.Curve, point: bytes) -> bytes:
    """A SubjectPublicKeyInfo with explicit ECParameters, built with asn1crypto (independent of
    ``aa.dg15(..., explicit_parameters=True)``, which uses devices.icao.ec)."""
    size = curve.size
    domain = asn1_keys.SpecifiedECDomain(
        {
            "version": "ecdpVer1",
            "field_id": {"field_type": "prime_field", "parameters": curve.p},
            "curve": {"a": curve.a.to_bytes(size, "big"), "b": curve.b.to_bytes(size, "big")},
            "base": b"\x04" + curve.gx.to_bytes(size, "big") + curve.gy.to_bytes(size, "big"),
            "order": curve.n,
            "cofactor": curve.h,
        }
    )
    info = asn1_keys.PublicKeyInfo(
        {
            "algorithm": {
                "algorithm": "ec",
                "parameters": asn1_keys.ECDomainParameters("specified", domain),
            },
            "public_key": point,
        }
    )
    return info.dump()


@pytest.mark.parametrize("curve", ["brainpoolP256r1", "secp256r1"])
def test_ec_key_with_explicit_parameters(ec_keys, curve):
    key = ec_keys[curve]
    point = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    dg15 = tlv.encode(0x6F, _explicit_spki(curves.CURVES[curve], point))
    parsed = aa.parse_dg15(dg15)
    assert parsed.explicit_parameters and parsed.curve == curves.CURVES[curve]
    assert parsed.description == f"ECDSA {curve}"
    ours = aa.parse_dg15(aa.dg15(key.public_key(), explicit_parameters=True))
    assert ours.explicit_parameters and ours.point == parsed.point
    chip = Chip(key, aa.ECDSA_PLAIN_SHA256)
    assert aa.active_authentication(chip, dg15, aa.ECDSA_PLAIN_SHA256).passed


def _python_ecdsa_sign(curve: curves.Curve, d: int, digest: bytes) -> bytes:
    """Plain ECDSA signature with the arithmetic of devices.icao.ec (test helper)."""
    n = curve.n
    e = int.from_bytes(digest, "big") >> max(0, 8 * len(digest) - n.bit_length())
    while True:
        k = int.from_bytes(os.urandom(curve.size + 8), "big") % n
        point = curve.multiply(k) if k else None
        if point is None:
            continue
        r = point[0] % n
        s = pow(k, -1, n) * (e + r * d) % n
        if r and s:
            half = (n.bit_length() + 7) // 8
            return r.to_bytes(half, "big") + s.to_bytes(half, "big")


def test_ecdsa_on_a_curve_cryptography_lacks():
    """brainpoolP224r1 (standardized domain parameters id 11): verified with ec.py arithmetic."""
    curve = curves.CURVES["brainpoolP224r1"]
    d = int.from_bytes(os.urandom(40), "big") % (curve.n - 1) + 1
    q = curve.multiply(d)
    assert q is not None
    spki = tlv.encode(
        0x30,
        tlv.encode(
            0x30,
            tlv.encode(0x06, curves.oid_to_der(aa.EC_PUBLIC_KEY)) + curves.curve_parameters(curve),
        )
        + tlv.encode(0x03, b"\x00" + curve.encode(q)),
    )
    dg15 = tlv.encode(0x6F, spki)
    key = aa.parse_dg15(dg15)
    assert key.public_key is None and key.curve == curve

    def chip(apdu: bytes) -> tuple[bytes, int]:
        challenge = secure.split_command(apdu)[4] or b""
        return _python_ecdsa_sign(curve, d, hashlib.sha224(challenge).digest()), 0x9000

    assert aa.active_authentication(chip, dg15, aa.ECDSA_PLAIN_SHA224).passed
    other = _python_ecdsa_sign(curve, d + 1, hashlib.sha224(CHALLENGE).digest())
    assert aa.verify_signature(key, CHALLENGE, other, aa.ECDSA_PLAIN_SHA224).status == "failed"


def test_python_ecdsa_agrees_with_cryptography(ec_keys):
    key = ec_keys["brainpoolP256r1"]
    parsed = aa.parse_dg15(aa.dg15(key.public_key()))
    assert parsed.curve is not None
    digest = hashlib.sha256(CHALLENGE).digest()
    r, s = asym_utils.decode_dss_signature(key.sign(CHALLENGE, ec.ECDSA(hashes.SHA256())))
    assert curves.ecdsa_verify(parsed.curve, parsed.point, digest, r, s)
    assert not curves.ecdsa_verify(parsed.curve, parsed.point, digest, r, (s + 1) % parsed.curve.n)
    assert not curves.ecdsa_verify(parsed.curve, parsed.point, hashlib.sha256(b"x").digest(), r, s)


def test_through_secure_messaging(rsa_keys):
    """The terminal passes its secure-messaging transmit; RSA-3072 needs extended lengths."""
    key = rsa_keys[3072]
    enc, mac = bytes(range(16)), bytes(range(16, 32))
    terminal = secure.SecureChannel(enc, mac, 0x0102030405060708)
    card = secure.SecureChannel(enc, mac, 0x0102030405060708)
    chip = Chip(key)

    def card_side(protected: bytes) -> bytes:
        data, sw = chip(card.unwrap_command(protected))
        return card.wrap_response(data, sw)

    def transmit(apdu: bytes) -> tuple[bytes, int]:
        return terminal.unwrap_response(card_side(terminal.wrap_command(apdu)))

    result = aa.active_authentication(transmit, aa.dg15(key.public_key()))
    assert result.passed, result


# ------------------------------------------------------------------ clones and refusals
def test_clone_signing_with_another_key_fails(rsa_keys, ec_keys):
    genuine, clone = rsa_keys[1024], aa.generate_key("rsa", bits=1024)
    result = aa.active_authentication(Chip(clone), aa.dg15(genuine.public_key()))
    assert result.status == "failed", result
    other = aa.generate_key("ec", curve="brainpoolP256r1")
    dg15 = aa.dg15(ec_keys["brainpoolP256r1"].public_key())
    alg = aa.ECDSA_PLAIN_SHA256
    assert aa.active_authentication(Chip(other, alg), dg15, alg).status == "failed"


def test_clone_with_a_larger_key_of_its_own_fails(rsa_keys):
    result = aa.active_authentication(Chip(rsa_keys[2048]), aa.dg15(rsa_keys[1024].public_key()))
    assert result.status == "failed"


@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_answer_to_another_challenge_fails(rsa_keys, ec_keys, kind):
    """A replayed answer: the chip signed some other challenge."""
    key = rsa_keys[1024] if kind == "rsa" else ec_keys["secp256r1"]
    alg = aa.ECDSA_PLAIN_SHA256 if kind == "ec" else None
    chip = Chip(key, alg, challenge_filter=lambda c: bytes([c[0] ^ 1]) + c[1:])
    result = aa.active_authentication(chip, aa.dg15(key.public_key()), alg)
    assert result.status == "failed"
    assert "does not match the challenge" in result.reason


def test_card_refusing_internal_authenticate_fails(rsa_keys):
    chip = Chip(rsa_keys[1024], sw=0x6982)
    result = aa.active_authentication(chip, aa.dg15(rsa_keys[1024].public_key()))
    assert result.status == "failed" and "6982" in result.reason


def test_alternative_signature_n_minus_s_is_accepted(rsa_keys):
    """ISO/IEC 9796-2 lets the signer send min(s, n - s)."""
    key = rsa_keys[1024]
    n = key.public_key().public_numbers().n
    s = int.from_bytes(aa.sign_challenge(key, CHALLENGE, None), "big")
    parsed = aa.parse_dg15(aa.dg15(key.public_key()))
    alternative = (n - s).to_bytes(128, "big")
    assert aa.verify_signature(parsed, CHALLENGE, alternative).passed


def test_ecdsa_without_dg14_is_unknown_and_nothing_is_sent(ec_keys):
    key = ec_keys["secp256r1"]
    chip = Chip(key, aa.ECDSA_PLAIN_SHA256)
    result = aa.active_authentication(chip, aa.dg15(key.public_key()))
    assert result.status == "unknown" and "ActiveAuthenticationInfo" in result.reason
    unknown = aa.active_authentication(chip, aa.dg15(key.public_key()), "1.2.3.4")
    assert unknown.status == "unknown" and "1.2.3.4" in unknown.reason
    assert chip.apdus == []


def test_unknown_hash_identifier_is_unknown(rsa_keys):
    """Trailer 37CC (Whirlpool): well formed, not checkable here."""
    key = rsa_keys[1024]
    numbers = key.private_numbers()
    n = numbers.public_numbers.n
    f = b"\x6a" + os.urandom(128 - 1 - 64 - 2) + os.urandom(64) + b"\x37\xcc"
    signature = pow(int.from_bytes(f, "big"), numbers.d, n).to_bytes(128, "big")
    parsed = aa.parse_dg15(aa.dg15(key.public_key()))
    result = aa.verify_signature(parsed, CHALLENGE, signature)
    assert result.status == "unknown" and "37" in result.reason


def test_transmit_errors_propagate(rsa_keys):
    def removed(apdu: bytes) -> tuple[bytes, int]:
        raise CardRemoved("card left the reader")

    with pytest.raises(CardRemoved):
        aa.active_authentication(removed, aa.dg15(rsa_keys[1024].public_key()))


def test_challenge_must_be_8_bytes(rsa_keys):
    with pytest.raises(ValueError):
        aa.active_authentication(Chip(rsa_keys[1024]), b"", challenge=b"1234")


def test_unparsable_dg15_gives_unknown_without_a_command():
    chip = Chip(aa.generate_key("rsa", bits=1024))
    result = aa.active_authentication(chip, b"\x6f\x03\x30\x01\x00")
    assert result.status == "unknown" and chip.apdus == []


def test_dg15_of_a_private_key_is_that_of_its_public_key(rsa_keys, ec_keys):
    for key in (rsa_keys[1024], ec_keys["brainpoolP256r1"]):
        assert aa.dg15(key) == aa.dg15(key.public_key())
    assert aa.active_authentication_key is aa.generate_key


def test_sign_challenge_ecdsa_needs_an_algorithm(ec_keys):
    with pytest.raises(ValueError):
        aa.sign_challenge(ec_keys["secp256r1"], CHALLENGE, None)


# ------------------------------------------------------------------------- malformed DG15
def _dsa_dg15() -> bytes:
    key = dsa.generate_private_key(1024).public_key()
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return tlv.encode(0x6F, der)


def _rsa_spki(n: bytes, e: bytes) -> bytes:
    rsa_key = tlv.encode(0x30, tlv.encode(0x02, n) + tlv.encode(0x02, e))
    algorithm = tlv.encode(0x30, tlv.encode(0x06, curves.oid_to_der(aa.RSA_ENCRYPTION)) + b"\5\0")
    return tlv.encode(0x6F, tlv.encode(0x30, algorithm + tlv.encode(0x03, b"\x00" + rsa_key)))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x6f",
        b"\x6f\x00",
        b"\x75\x03\x30\x01\x00",  # not tag 6F
        b"\x6f\x05\x30\x03\x02\x01\x01",  # not a SubjectPublicKeyInfo
        _rsa_spki(b"\x00" + b"\xff" * 127 + b"\xfe", b"\x01\x00\x01"),  # even modulus
        _rsa_spki(b"\x00" + b"\xff" * 128, b"\x02"),  # even exponent
        _rsa_spki(b"\xc1" * 128, b"\x01\x00\x01"),  # negative modulus
        _rsa_spki(b"\x7f" * 32 + b"\x01", b"\x01\x00\x01"),  # too short
    ],
)
def test_malformed_dg15_raises(data):
    with pytest.raises(aa.ActiveAuthenticationError):
        aa.parse_dg15(data)


def test_dg15_errors_are_chip_errors_and_value_errors(ec_keys):
    with pytest.raises(aa.UnsupportedActiveAuthentication) as info:
        aa.parse_dg15(_dsa_dg15())
    assert isinstance(info.value, CardError) and isinstance(info.value, ValueError)
    good = aa.dg15(ec_keys["secp256r1"].public_key())
    off_curve = good[:-1] + bytes([good[-1] ^ 1])
    with pytest.raises(aa.ActiveAuthenticationError, match="not on"):
        aa.parse_dg15(off_curve)


# ---------------------------------------------------- published ISO/IEC 9796-2 answers
# Bouncy Castle, core/src/test/java/org/bouncycastle/crypto/test/ISO9796Test.java, doTest13:
# an eMRTD's answer to INTERNAL AUTHENTICATE with an all-zero challenge, SHA-1, trailer BC.
BC_AA_MODULUS = int(
    "CDCBDABBF93BE8E8294E32B055256BBD0397735189BF75816341BB0D488D05D627991221DF7D59835C76A4BB"
    "4808ADEEB779E7794504E956ADC2A661B46904CDC71337DD29DDDD454124EF79CFDD7BC2C21952573CEFBA48"
    "5CC38C6BD2428809B5A31A898A6B5648CAA4ED678D9743B589134B7187478996300EDBA16271A861",
    16,
)
BC_AA_SIGNATURE = bytes.fromhex(
    "482E20D1EDDED34359C38F5E7C01203F9D6B2641CDCA5C404D49ADAEDE034C7481D781D043722587761C9046"
    "8DE69C6585A1E8B9C322F90E1B580EEDAB3F6007D0C366CF92B4DB8B41C8314929DCE2BE889C0129123484D2"
    "FD3D12763D2EBFD12AC8E51D7061AFCA1A53DEDEC7B9A617472A78C952CCC72467AE008E5F132994"
)
# Same file, doTest5: ISO/IEC 9796-2 edition 1 example, partial recovery, RIPEMD-160 implied
ISO_MODULUS = int(
    "ffffffff78f6c55506c59785e871211ee120b0b5dd644aa796d82413a47b24573f1be5745b5cd9950f6b389b"
    "52350d4e01e90009669a8720bf265a2865994190a661dea3c7828e2e7ca1b19651adc2d5",
    16,
)
ISO_MESSAGE = bytes.fromhex("fedcba9876543210" * 14)
ISO_SIGNATURE = bytes.fromhex(
    "5cf9a01854dbacaec83aae8efc563d74538192e95466babacd361d7c86000fe42dcb4581e48e4feb862d0469"
    "8da9203b1803b262105104d510b365ee9c660857ba1c001aa57abfd1c8de92e47c275cae"
)


def test_known_answer_emrtd_internal_authenticate():
    dg15 = aa.dg15(rsa.RSAPublicNumbers(65537, BC_AA_MODULUS).public_key())
    key = aa.parse_dg15(dg15)
    assert aa.verify_signature(key, bytes(8), BC_AA_SIGNATURE).passed

    def chip(apdu: bytes) -> tuple[bytes, int]:
        return BC_AA_SIGNATURE, 0x9000

    assert aa.active_authentication(chip, dg15, challenge=bytes(8)).passed
    assert aa.active_authentication(chip, dg15).status == "failed"  # a fresh challenge
    opened = aa.open_iso9796_2(BC_AA_MODULUS, 65537, BC_AA_SIGNATURE)
    assert len(opened.recovered) == 106 and opened.partial and opened.hash_name == "sha1"


def test_known_answer_iso9796_2_partial_recovery():
    try:
        hashlib.new("ripemd160")
    except ValueError:
        pytest.skip("this OpenSSL has no RIPEMD-160")
    opened = aa.open_iso9796_2(ISO_MODULUS, 3, ISO_SIGNATURE, implicit_hash="ripemd160")
    assert opened.partial and not opened.explicit_trailer
    assert 0 < len(opened.recovered) < len(ISO_MESSAGE)
    assert ISO_MESSAGE.startswith(opened.recovered)
    assert hashlib.new("ripemd160", ISO_MESSAGE).digest() == opened.digest
    with pytest.raises(aa.ActiveAuthenticationError):
        aa.open_iso9796_2(ISO_MODULUS, 3, ISO_SIGNATURE[:-1] + bytes([ISO_SIGNATURE[-1] ^ 1]))


# ------------------------------------------------------------------------------ fuzzing
def _valid_dg15s() -> list[bytes]:
    rsa_key = aa.generate_key("rsa", bits=1024)
    ec_key = aa.generate_key("ec", curve="brainpoolP256r1")
    return [
        aa.dg15(rsa_key.public_key()),
        aa.dg15(ec_key.public_key()),
        aa.dg15(ec_key.public_key(), explicit_parameters=True),
    ]


VALID_DG15S = _valid_dg15s()
FUZZ_RSA = aa.generate_key("rsa", bits=1024)
FUZZ_RSA_KEY = aa.parse_dg15(aa.dg15(FUZZ_RSA.public_key()))


@fuzz(300)
@given(st.binary(max_size=400))
def test_fuzz_parse_dg15_random_bytes(data):
    with contextlib.suppress(aa.ActiveAuthenticationError):
        aa.parse_dg15(data)


@fuzz(400)
@given(
    st.sampled_from(VALID_DG15S),
    st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), min_size=1, max_size=4),
    st.integers(0, 2000),
)
def test_fuzz_parse_dg15_mutations(dg15, edits, cut):
    data = bytearray(dg15)
    for at, value in edits:
        data[at % len(data)] = value
    try:
        key = aa.parse_dg15(bytes(data[: max(1, len(data) - cut % 40)]))
    except aa.ActiveAuthenticationError:
        return
    assert key.algorithm in ("rsa", "ec") and key.signature_length > 0


@fuzz(300)
@given(
    st.sampled_from(range(3)),
    st.binary(max_size=300),
    st.sampled_from([0x9000, 0x9000, 0x6982, 0x6D00, 0x6A80, 0x0000]),
    st.sampled_from([aa.ECDSA_PLAIN_SHA256, aa.ECDSA_PLAIN_RIPEMD160, "1.2.3", None]),
)
def test_fuzz_verifier_with_random_answers(which, answer, sw, algorithm):
    def chip(apdu: bytes) -> tuple[bytes, int]:
        return answer, sw

    result = aa.active_authentication(chip, VALID_DG15S[which], algorithm, challenge=CHALLENGE)
    assert result.status in ("failed", "unknown")
    assert isinstance(result.reason, str) and result.reason


@st.composite
def representatives(draw: st.DrawFn) -> bytes:
    """128-byte ISO/IEC 9796-2 message representatives, well formed or nearly so."""
    head = bytes([draw(st.sampled_from([0x6A, 0x6B, 0x4A, 0x4B, 0x7A, 0x5A, 0x6C, 0x2A]))])
    head += b"\xbb" * draw(st.integers(0, 130)) + draw(st.sampled_from([b"\xba", b"\xbb", b""]))
    tail = draw(
        st.sampled_from(
            [b"\xbc", b"\x33\xcc", b"\x34\xcc", b"\x37\xcc", b"\x31\xcc", b"\xcc", b"\x1c"]
        )
    )
    body = draw(st.binary(min_size=128, max_size=128))
    return (head + body)[: 128 - len(tail)] + tail


@fuzz(400)
@given(representatives())
def test_fuzz_iso9796_2_representatives(f):
    """Arbitrary representatives, properly signed, so that opening reaches every branch."""
    key = FUZZ_RSA
    numbers = key.private_numbers()
    n = numbers.public_numbers.n
    signature = pow(int.from_bytes(f, "big"), numbers.d, n).to_bytes(128, "big")
    result = aa.verify_signature(FUZZ_RSA_KEY, CHALLENGE, signature)
    assert result.status in ("failed", "unknown")
