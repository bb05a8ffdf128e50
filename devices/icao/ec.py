"""Elliptic curves and Diffie-Hellman groups of ICAO 9303 Part 11 (PACE, Chip Authentication).

What is here:

* the prime-field curves that ICAO 9303-11 / BSI TR-03110 standardize (domain parameter ids
  8-18: NIST P-192 ... P-521 from FIPS 186 / SEC 2, brainpool P192r1 ... P512r1 from RFC 5639)
  and the three RFC 5114 MODP groups (ids 0-2), in ``CURVES`` and ``STANDARDIZED``;
* affine/Jacobian point arithmetic on short Weierstrass curves (add, double, multiply), point
  encoding (uncompressed ``04 || X || Y``; compressed ``02``/``03`` is decoded too) and the
  on-curve check. Arithmetic is plain Python integers: correct, but **not constant time**, so
  it is fit for a terminal's ephemeral keys and for the emulated chip, not for a real card;
* ``named_curve`` and ``curve_from_parameters``: the named curve behind explicit ECParameters
  (what EF.DG14, EF.DG15 and document signer certificates often carry) or a namedCurve OID.

What is not: binary-field (characteristic 2) curves, curves outside the table above (explicit
parameters must match one of them exactly), and point compression on output.

Every failure on outside data raises ``ECError`` (a ``CardError`` and a ``ValueError``).
"""

from __future__ import annotations

from dataclasses import dataclass

from devices.exceptions import CardError
from devices.icao import tlv

Point = tuple[int, int]  # affine (x, y); the point at infinity is ``None`` where it can occur


class ECError(CardError, ValueError):
    """An elliptic-curve point or domain parameter set that is malformed or not supported."""


@dataclass(frozen=True)
class Curve:
    """Short Weierstrass curve y^2 = x^3 + a x + b over GF(p), base point G of order n,
    cofactor h. ``name`` is the ``cryptography`` package's name of the curve."""

    name: str
    p: int
    a: int
    b: int
    gx: int
    gy: int
    n: int
    h: int

    @property
    def size(self) -> int:
        """Bytes of one field element (coordinates and shared secrets are this long)."""
        return (self.p.bit_length() + 7) // 8

    @property
    def generator(self) -> Point:
        """The base point G."""
        return (self.gx, self.gy)

    @property
    def oid(self) -> str:
        """The namedCurve object identifier."""
        return CURVE_OIDS[self.name]

    def is_on_curve(self, point: Point) -> bool:
        """Whether ``point`` (affine) satisfies the curve equation with reduced coordinates."""
        return is_on_curve(self, point)

    def multiply(self, k: int, point: Point | None = None) -> Point | None:
        """k * point (G when ``point`` is None); None for the point at infinity."""
        return multiply(self, k, self.generator if point is None else point)

    def add(self, p1: Point | None, p2: Point | None) -> Point | None:
        """p1 + p2."""
        return add(self, p1, p2)

    def encode(self, point: Point) -> bytes:
        """Uncompressed encoding 04 || X || Y."""
        return encode_point(self, point)

    def decode(self, data: bytes) -> Point:
        """A point from its encoding; ECError if malformed, off the curve or infinity."""
        return decode_point(self, data)


@dataclass(frozen=True)
class DHGroup:
    """A MODP Diffie-Hellman group: prime p, generator g of the subgroup of prime order q."""

    name: str
    p: int
    g: int
    q: int

    @property
    def size(self) -> int:
        """Bytes of one group element (public keys and shared secrets are this long)."""
        return (self.p.bit_length() + 7) // 8


def _h(text: str) -> int:
    return int(text.replace(" ", ""), 16)


def _curve(name: str, p: str, a: str, b: str, gx: str, gy: str, n: str, h: int = 1) -> Curve:
    return Curve(name, _h(p), _h(a), _h(b), _h(gx), _h(gy), _h(n), h)


# Domain parameters: NIST curves from FIPS 186-4 D.1.2 / SEC 2 v2 2.2-2.6 (a = p - 3);
# brainpool curves from RFC 5639 section 3.
CURVES: dict[str, Curve] = {
    c.name: c
    for c in (
        _curve(
            "secp192r1",
            "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFFFFFFFFFFFF",
            "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFFFFFFFFFFFC",
            "64210519E59C80E70FA7E9AB72243049FEB8DEECC146B9B1",
            "188DA80EB03090F67CBF20EB43A18800F4FF0AFD82FF1012",
            "07192B95FFC8DA78631011ED6B24CDD573F977A11E794811",
            "FFFFFFFFFFFFFFFFFFFFFFFF99DEF836146BC9B1B4D22831",
        ),
        _curve(
            "secp224r1",
            "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF000000000000000000000001",
            "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFE",
            "B4050A850C04B3ABF54132565044B0B7D7BFD8BA270B39432355FFB4",
            "B70E0CBD6BB4BF7F321390B94A03C1D356C21122343280D6115C1D21",
            "BD376388B5F723FB4C22DFE6CD4375A05A07476444D5819985007E34",
            "FFFFFFFFFFFFFFFFFFFFFFFFFFFF16A2E0B8F03E13DD29455C5C2A3D",
        ),
        _curve(
            "secp256r1",
            "FFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF",
            "FFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFC",
            "5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B",
            "6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296",
            "4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5",
            "FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551",
        ),
        _curve(
            "secp384r1",
            "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFE"
            "FFFFFFFF0000000000000000FFFFFFFF",
            "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFE"
            "FFFFFFFF0000000000000000FFFFFFFC",
            "B3312FA7E23EE7E4988E056BE3F82D19181D9C6EFE8141120314088F5013875A"
            "C656398D8A2ED19D2A85C8EDD3EC2AEF",
            "AA87CA22BE8B05378EB1C71EF320AD746E1D3B628BA79B9859F741E082542A38"
            "5502F25DBF55296C3A545E3872760AB7",
            "3617DE4A96262C6F5D9E98BF9292DC29F8F41DBD289A147CE9DA3113B5F0B8C0"
            "0A60B1CE1D7E819D7A431D7C90EA0E5F",
            "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF"
            "581A0DB248B0A77AECEC196ACCC52973",
        ),
        _curve(
            "secp521r1",
            "01FF" + "FF" * 64,
            "01FF" + "FF" * 63 + "FC",
            "0051953EB9618E1C9A1F929A21A0B68540EEA2DA725B99B315F3B8B489918EF1"
            "09E156193951EC7E937B1652C0BD3BB1BF073573DF883D2C34F1EF451FD46B50"
            "3F00",
            "00C6858E06B70404E9CD9E3ECB662395B4429C648139053FB521F828AF606B4D"
            "3DBAA14B5E77EFE75928FE1DC127A2FFA8DE3348B3C1856A429BF97E7E31C2E5"
            "BD66",
            "011839296A789A3BC0045C8A5FB42C7D1BD998F54449579B446817AFBD17273E"
            "662C97EE72995EF42640C550B9013FAD0761353C7086A272C24088BE94769FD1"
            "6650",
            "01FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"
            "FFFA51868783BF2F966B7FCC0148F709A5D03BB5C9B8899C47AEBB6FB71E9138"
            "6409",
        ),
        _curve(
            "brainpoolP192r1",
            "C302F41D932A36CDA7A3463093D18DB78FCE476DE1A86297",
            "6A91174076B1E0E19C39C031FE8685C1CAE040E5C69A28EF",
            "469A28EF7C28CCA3DC721D044F4496BCCA7EF4146FBF25C9",
            "C0A0647EAAB6A48753B033C56CB0F0900A2F5C4853375FD6",
            "14B690866ABD5BB88B5F4828C1490002E6773FA2FA299B8F",
            "C302F41D932A36CDA7A3462F9E9E916B5BE8F1029AC4ACC1",
        ),
        _curve(
            "brainpoolP224r1",
            "D7C134AA264366862A18302575D1D787B09F075797DA89F57EC8C0FF",
            "68A5E62CA9CE6C1C299803A6C1530B514E182AD8B0042A59CAD29F43",
            "2580F63CCFE44138870713B1A92369E33E2135D266DBB372386C400B",
            "0D9029AD2C7E5CF4340823B2A87DC68C9E4CE3174C1E6EFDEE12C07D",
            "58AA56F772C0726F24C6B89E4ECDAC24354B9E99CAA3F6D3761402CD",
            "D7C134AA264366862A18302575D0FB98D116BC4B6DDEBCA3A5A7939F",
        ),
        _curve(
            "brainpoolP256r1",
            "A9FB57DBA1EEA9BC3E660A909D838D726E3BF623D52620282013481D1F6E5377",
            "7D5A0975FC2C3057EEF67530417AFFE7FB8055C126DC5C6CE94A4B44F330B5D9",
            "26DC5C6CE94A4B44F330B5D9BBD77CBF958416295CF7E1CE6BCCDC18FF8C07B6",
            "8BD2AEB9CB7E57CB2C4B482FFC81B7AFB9DE27E1E3BD23C23A4453BD9ACE3262",
            "547EF835C3DAC4FD97F8461A14611DC9C27745132DED8E545C1D54C72F046997",
            "A9FB57DBA1EEA9BC3E660A909D838D718C397AA3B561A6F7901E0E82974856A7",
        ),
        _curve(
            "brainpoolP320r1",
            "D35E472036BC4FB7E13C785ED201E065F98FCFA6F6F40DEF4F92B9EC7893EC28FCD412B1F1B32E27",
            "3EE30B568FBAB0F883CCEBD46D3F3BB8A2A73513F5EB79DA66190EB085FFA9F492F375A97D860EB4",
            "520883949DFDBC42D3AD198640688A6FE13F41349554B49ACC31DCCD884539816F5EB4AC8FB1F1A6",
            "43BD7E9AFB53D8B85289BCC48EE5BFE6F20137D10A087EB6E7871E2A10A599C710AF8D0D39E20611",
            "14FDD05545EC1CC8AB4093247F77275E0743FFED117182EAA9C77877AAAC6AC7D35245D1692E8EE1",
            "D35E472036BC4FB7E13C785ED201E065F98FCFA5B68F12A32D482EC7EE8658E98691555B44C59311",
        ),
        _curve(
            "brainpoolP384r1",
            "8CB91E82A3386D280F5D6F7E50E641DF152F7109ED5456B412B1DA197FB71123"
            "ACD3A729901D1A71874700133107EC53",
            "7BC382C63D8C150C3C72080ACE05AFA0C2BEA28E4FB22787139165EFBA91F90F"
            "8AA5814A503AD4EB04A8C7DD22CE2826",
            "04A8C7DD22CE28268B39B55416F0447C2FB77DE107DCD2A62E880EA53EEB62D5"
            "7CB4390295DBC9943AB78696FA504C11",
            "1D1C64F068CF45FFA2A63A81B7C13F6B8847A3E77EF14FE3DB7FCAFE0CBD10E8"
            "E826E03436D646AAEF87B2E247D4AF1E",
            "8ABE1D7520F9C2A45CB1EB8E95CFD55262B70B29FEEC5864E19C054FF9912928"
            "0E4646217791811142820341263C5315",
            "8CB91E82A3386D280F5D6F7E50E641DF152F7109ED5456B31F166E6CAC0425A7"
            "CF3AB6AF6B7FC3103B883202E9046565",
        ),
        _curve(
            "brainpoolP512r1",
            "AADD9DB8DBE9C48B3FD4E6AE33C9FC07CB308DB3B3C9D20ED6639CCA70330871"
            "7D4D9B009BC66842AECDA12AE6A380E62881FF2F2D82C68528AA6056583A48F3",
            "7830A3318B603B89E2327145AC234CC594CBDD8D3DF91610A83441CAEA9863BC"
            "2DED5D5AA8253AA10A2EF1C98B9AC8B57F1117A72BF2C7B9E7C1AC4D77FC94CA",
            "3DF91610A83441CAEA9863BC2DED5D5AA8253AA10A2EF1C98B9AC8B57F1117A7"
            "2BF2C7B9E7C1AC4D77FC94CADC083E67984050B75EBAE5DD2809BD638016F723",
            "81AEE4BDD82ED9645A21322E9C4C6A9385ED9F70B5D916C1B43B62EEF4D0098E"
            "FF3B1F78E2D0D48D50D1687B93B97D5F7C6D5047406A5E688B352209BCB9F822",
            "7DDE385D566332ECC0EABFA9CF7822FDF209F70024A57B1AA000C55B881F8111"
            "B2DCDE494A5F485E5BCA4BD88A2763AED1CA2B2FA8F0540678CD1E0F3AD80892",
            "AADD9DB8DBE9C48B3FD4E6AE33C9FC07CB308DB3B3C9D20ED6639CCA70330870"
            "553E5C414CA92619418661197FAC10471DB1D381085DDADDB58796829CA90069",
        ),
    )
}

CURVE_OIDS: dict[str, str] = {
    "secp192r1": "1.2.840.10045.3.1.1",
    "secp224r1": "1.3.132.0.33",
    "secp256r1": "1.2.840.10045.3.1.7",
    "secp384r1": "1.3.132.0.34",
    "secp521r1": "1.3.132.0.35",
    "brainpoolP192r1": "1.3.36.3.3.2.8.1.1.3",
    "brainpoolP224r1": "1.3.36.3.3.2.8.1.1.5",
    "brainpoolP256r1": "1.3.36.3.3.2.8.1.1.7",
    "brainpoolP320r1": "1.3.36.3.3.2.8.1.1.9",
    "brainpoolP384r1": "1.3.36.3.3.2.8.1.1.11",
    "brainpoolP512r1": "1.3.36.3.3.2.8.1.1.13",
}

# RFC 5114 section 2.1-2.3 (values cross-checked against Bouncy Castle's DHStandardGroups and
# mbed TLS's dhm.c; tests/test_pace.py checks that p and q are prime, q | p - 1, g^q = 1).
MODP_1024_160 = DHGroup(
    "modp1024_160",
    _h(
        "B10B8F96A080E01DDE92DE5EAE5D54EC52C99FBCFB06A3C69A6A9DCA52D23B61"
        "6073E28675A23D189838EF1E2EE652C013ECB4AEA906112324975C3CD49B83BF"
        "ACCBDD7D90C4BD7098488E9C219A73724EFFD6FAE5644738FAA31A4FF55BCCC0"
        "A151AF5F0DC8B4BD45BF37DF365C1A65E68CFDA76D4DA708DF1FB2BC2E4A4371"
    ),
    _h(
        "A4D1CBD5C3FD34126765A442EFB99905F8104DD258AC507FD6406CFF14266D31"
        "266FEA1E5C41564B777E690F5504F213160217B4B01B886A5E91547F9E2749F4"
        "D7FBD7D3B9A92EE1909D0D2263F80A76A6A24C087A091F531DBF0A0169B6A28A"
        "D662A4D18E73AFA32D779D5918D08BC8858F4DCEF97C2A24855E6EEB22B3B2E5"
    ),
    _h("F518AA8781A8DF278ABA4E7D64B7CB9D49462353"),
)
MODP_2048_224 = DHGroup(
    "modp2048_224",
    _h(
        "AD107E1E9123A9D0D660FAA79559C51FA20D64E5683B9FD1B54B1597B61D0A75"
        "E6FA141DF95A56DBAF9A3C407BA1DF15EB3D688A309C180E1DE6B85A1274A0A6"
        "6D3F8152AD6AC2129037C9EDEFDA4DF8D91E8FEF55B7394B7AD5B7D0B6C12207"
        "C9F98D11ED34DBF6C6BA0B2C8BBC27BE6A00E0A0B9C49708B3BF8A3170918836"
        "81286130BC8985DB1602E714415D9330278273C7DE31EFDC7310F7121FD5A074"
        "15987D9ADC0A486DCDF93ACC44328387315D75E198C641A480CD86A1B9E587E8"
        "BE60E69CC928B2B9C52172E413042E9B23F10B0E16E79763C9B53DCF4BA80A29"
        "E3FB73C16B8E75B97EF363E2FFA31F71CF9DE5384E71B81C0AC4DFFE0C10E64F"
    ),
    _h(
        "AC4032EF4F2D9AE39DF30B5C8FFDAC506CDEBE7B89998CAF74866A08CFE4FFE3"
        "A6824A4E10B9A6F0DD921F01A70C4AFAAB739D7700C29F52C57DB17C620A8652"
        "BE5E9001A8D66AD7C17669101999024AF4D027275AC1348BB8A762D0521BC98A"
        "E247150422EA1ED409939D54DA7460CDB5F6C6B250717CBEF180EB34118E98D1"
        "19529A45D6F834566E3025E316A330EFBB77A86F0C1AB15B051AE3D428C8F8AC"
        "B70A8137150B8EEB10E183EDD19963DDD9E263E4770589EF6AA21E7F5F2FF381"
        "B539CCE3409D13CD566AFBB48D6C019181E1BCFE94B30269EDFE72FE9B6AA4BD"
        "7B5A0F1C71CFFF4C19C418E1F6EC017981BC087F2A7065B384B890D3191F2BFA"
    ),
    _h("801C0D34C58D93FE997177101F80535A4738CEBCBF389A99B36371EB"),
)
MODP_2048_256 = DHGroup(
    "modp2048_256",
    _h(
        "87A8E61DB4B6663CFFBBD19C651959998CEEF608660DD0F25D2CEED4435E3B00"
        "E00DF8F1D61957D4FAF7DF4561B2AA3016C3D91134096FAA3BF4296D830E9A7C"
        "209E0C6497517ABD5A8A9D306BCF67ED91F9E6725B4758C022E0B1EF4275BF7B"
        "6C5BFC11D45F9088B941F54EB1E59BB8BC39A0BF12307F5C4FDB70C581B23F76"
        "B63ACAE1CAA6B7902D52526735488A0EF13C6D9A51BFA4AB3AD8347796524D8E"
        "F6A167B5A41825D967E144E5140564251CCACB83E6B486F6B3CA3F7971506026"
        "C0B857F689962856DED4010ABD0BE621C3A3960A54E710C375F26375D7014103"
        "A4B54330C198AF126116D2276E11715F693877FAD7EF09CADB094AE91E1A1597"
    ),
    _h(
        "3FB32C9B73134D0B2E77506660EDBD484CA7B18F21EF205407F4793A1A0BA125"
        "10DBC15077BE463FFF4FED4AAC0BB555BE3A6C1B0C6B47B1BC3773BF7E8C6F62"
        "901228F8C28CBB18A55AE31341000A650196F931C77A57F2DDF463E5E9EC144B"
        "777DE62AAAB8A8628AC376D282D6ED3864E67982428EBC831D14348F6F2F9193"
        "B5045AF2767164E1DFC967C1FB3F2E55A4BD1BFFE83B9C80D052B985D182EA0A"
        "DB2A3B7313D3FE14C8484B1E052588B9B7D2BBD2DF016199ECD06E1557CD0915"
        "B3353BBB64E0EC377FD028370DF92B52C7891428CDC67EB6184B523D1DB246C3"
        "2F63078490F00EF8D647D148D47954515E2327CFEF98C582664B4C0F6CC41659"
    ),
    _h("8CF83642A709A097B447997640129DA299B1A47D1EB3750BA308B0FE64F5FBD3"),
)
DH_GROUPS: dict[str, DHGroup] = {g.name: g for g in (MODP_1024_160, MODP_2048_224, MODP_2048_256)}

# ICAO 9303-11 section 9.5.1 / BSI TR-03110-3 A.2.1.1: standardized domain parameter ids
STANDARDIZED: dict[int, Curve | DHGroup] = {
    0: MODP_1024_160,
    1: MODP_2048_224,
    2: MODP_2048_256,
    8: CURVES["secp192r1"],
    9: CURVES["brainpoolP192r1"],
    10: CURVES["secp224r1"],
    11: CURVES["brainpoolP224r1"],
    12: CURVES["secp256r1"],
    13: CURVES["brainpoolP256r1"],
    14: CURVES["brainpoolP320r1"],
    15: CURVES["secp384r1"],
    16: CURVES["brainpoolP384r1"],
    17: CURVES["brainpoolP512r1"],
    18: CURVES["secp521r1"],
}


def standardized_id(domain: Curve | DHGroup) -> int | None:
    """The standardized domain parameter id of ``domain`` (None if it has none)."""
    for number, known in STANDARDIZED.items():
        if known == domain:
            return number
    return None


# ------------------------------------------------------------------------ point arithmetic
_Jacobian = tuple[int, int, int]  # (X, Y, Z) with x = X/Z^2, y = Y/Z^3; Z = 0 is infinity


def is_on_curve(curve: Curve, point: Point) -> bool:
    """Whether ``point`` has coordinates in [0, p) and satisfies y^2 = x^3 + a x + b."""
    x, y = point
    p = curve.p
    if not (0 <= x < p and 0 <= y < p):
        return False
    return (y * y - (x * x * x + curve.a * x + curve.b)) % p == 0


def _to_jacobian(point: Point | None) -> _Jacobian:
    if point is None:
        return (1, 1, 0)
    return (point[0], point[1], 1)


def _to_affine(curve: Curve, j: _Jacobian) -> Point | None:
    x, y, z = j
    if z == 0:
        return None
    p = curve.p
    zi = pow(z, -1, p)
    zi2 = zi * zi % p
    return (x * zi2 % p, y * zi2 * zi % p)


def _jdouble(curve: Curve, j: _Jacobian) -> _Jacobian:
    x, y, z = j
    p = curve.p
    if z == 0 or y == 0:
        return (1, 1, 0)
    yy = y * y % p
    s = 4 * x * yy % p
    zz = z * z % p
    m = (3 * x * x + curve.a * zz * zz) % p
    x3 = (m * m - 2 * s) % p
    y3 = (m * (s - x3) - 8 * yy * yy) % p
    z3 = 2 * y * z % p
    return (x3, y3, z3)


def _jadd(curve: Curve, j1: _Jacobian, j2: _Jacobian) -> _Jacobian:
    x1, y1, z1 = j1
    x2, y2, z2 = j2
    if z1 == 0:
        return j2
    if z2 == 0:
        return j1
    p = curve.p
    z1z1 = z1 * z1 % p
    z2z2 = z2 * z2 % p
    u1 = x1 * z2z2 % p
    u2 = x2 * z1z1 % p
    s1 = y1 * z2 * z2z2 % p
    s2 = y2 * z1 * z1z1 % p
    if u1 == u2:
        if s1 != s2:
            return (1, 1, 0)  # P + (-P)
        return _jdouble(curve, j1)
    hh = (u2 - u1) % p
    r = (s2 - s1) % p
    h2 = hh * hh % p
    h3 = hh * h2 % p
    v = u1 * h2 % p
    x3 = (r * r - h3 - 2 * v) % p
    y3 = (r * (v - x3) - s1 * h3) % p
    z3 = hh * z1 * z2 % p
    return (x3, y3, z3)


def add(curve: Curve, p1: Point | None, p2: Point | None) -> Point | None:
    """p1 + p2 on ``curve`` (None is the point at infinity)."""
    return _to_affine(curve, _jadd(curve, _to_jacobian(p1), _to_jacobian(p2)))


def double(curve: Curve, point: Point | None) -> Point | None:
    """2 * point."""
    return _to_affine(curve, _jdouble(curve, _to_jacobian(point)))


def negate(curve: Curve, point: Point | None) -> Point | None:
    """-point."""
    if point is None:
        return None
    return (point[0], (-point[1]) % curve.p)


def multiply(curve: Curve, k: int, point: Point | None) -> Point | None:
    """k * point (double-and-add, not constant time); negative k multiplies -point."""
    if k < 0:
        return multiply(curve, -k, negate(curve, point))
    acc: _Jacobian = (1, 1, 0)
    base = _to_jacobian(point)
    for bit in bin(k)[2:]:
        acc = _jdouble(curve, acc)
        if bit == "1":
            acc = _jadd(curve, acc, base)
    return _to_affine(curve, acc)


def ecdsa_verify(curve: Curve, point: Point | None, digest: bytes, r: int, s: int) -> bool:
    """ECDSA verification (SEC 1 4.1.4) with this module's arithmetic, for keys on curves the
    ``cryptography`` package lacks or gives as explicit parameters. ``digest`` is the
    message's hash (truncated to the order's length here)."""
    n = curve.n
    if point is None or not (0 < r < n and 0 < s < n):
        return False
    e = int.from_bytes(digest, "big")
    if 8 * len(digest) > n.bit_length():
        e >>= 8 * len(digest) - n.bit_length()
    w = pow(s, -1, n)
    total = add(
        curve, multiply(curve, e * w % n, curve.generator), multiply(curve, r * w % n, point)
    )
    return total is not None and total[0] % n == r


def _sqrt_mod(value: int, p: int) -> int | None:
    """A square root of ``value`` modulo the odd prime p, or None (Tonelli-Shanks)."""
    value %= p
    if value == 0:
        return 0
    if pow(value, (p - 1) // 2, p) != 1:
        return None
    if p % 4 == 3:
        return pow(value, (p + 1) // 4, p)
    q, s = p - 1, 0
    while q % 2 == 0:
        q, s = q // 2, s + 1
    z = 2
    while pow(z, (p - 1) // 2, p) != p - 1:
        z += 1
    m, c, t, r = s, pow(z, q, p), pow(value, q, p), pow(value, (q + 1) // 2, p)
    while t != 1:
        i, t2 = 0, t
        while t2 != 1:
            t2, i = t2 * t2 % p, i + 1
        b = pow(c, 1 << (m - i - 1), p)
        m, c, t, r = i, b * b % p, t * b * b % p, r * b % p
    return r


def encode_point(curve: Curve, point: Point) -> bytes:
    """Uncompressed SEC 1 encoding 04 || X || Y, coordinates padded to the field size."""
    size = curve.size
    return b"\x04" + point[0].to_bytes(size, "big") + point[1].to_bytes(size, "big")


def decode_point(curve: Curve, data: bytes) -> Point:
    """A point from its SEC 1 encoding (04 uncompressed, 02/03 compressed). ECError for the
    point at infinity (00), a wrong length, or a point that is not on the curve."""
    size = curve.size
    if not data:
        raise ECError("empty elliptic-curve point")
    if data[0] == 0x00:
        raise ECError("the point at infinity is not a valid public key")
    if data[0] == 0x04:
        if len(data) != 1 + 2 * size:
            raise ECError(
                f"uncompressed point of {len(data)} bytes, {1 + 2 * size} expected on {curve.name}"
            )
        point = (
            int.from_bytes(data[1 : 1 + size], "big"),
            int.from_bytes(data[1 + size :], "big"),
        )
    elif data[0] in (0x02, 0x03):
        if len(data) != 1 + size:
            raise ECError(f"compressed point of {len(data)} bytes, {1 + size} expected")
        x = int.from_bytes(data[1:], "big")
        if x >= curve.p:
            raise ECError("point x-coordinate is not reduced modulo p")
        y = _sqrt_mod(x * x * x + curve.a * x + curve.b, curve.p)
        if y is None:
            raise ECError(f"compressed point is not on {curve.name}")
        if (y & 1) != (data[0] & 1):
            y = curve.p - y
        point = (x, y % curve.p)
    else:
        raise ECError(f"unknown point encoding {data[0]:02X}")
    if not is_on_curve(curve, point):
        raise ECError(f"point is not on {curve.name}")
    return point


# ------------------------------------------------------------------- domain parameters (DER)
def oid_to_der(dotted: str) -> bytes:
    """The content octets of an OBJECT IDENTIFIER (without tag and length)."""
    try:
        arcs = [int(a) for a in dotted.split(".")]
    except ValueError as exc:
        raise ECError(f"not an object identifier: {dotted!r}") from exc
    if len(arcs) < 2 or arcs[0] > 2 or (arcs[0] < 2 and arcs[1] >= 40) or min(arcs) < 0:
        raise ECError(f"not an object identifier: {dotted!r}")
    out = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out += bytes(reversed(chunk))
    return bytes(out)


def oid_from_der(value: bytes) -> str:
    """Dotted form of OBJECT IDENTIFIER content octets; ECError when malformed."""
    if not value or value[-1] & 0x80:
        raise ECError("truncated object identifier")
    arcs: list[int] = []
    current = 0
    start = True
    for byte in value:
        if start and byte == 0x80:
            raise ECError("non-minimal object identifier encoding")
        current = (current << 7) | (byte & 0x7F)
        start = not byte & 0x80
        if start:
            arcs.append(current)
            current = 0
    first = arcs[0]
    head = [0, first] if first < 40 else [1, first - 40] if first < 80 else [2, first - 80]
    return ".".join(str(a) for a in head + arcs[1:])


def der_unsigned(value: bytes) -> int:
    """An INTEGER's content octets as a non-negative number. Some documents encode unsigned
    parameters without the leading 00 (so DER would read them as negative): they are read as
    unsigned, and the named-curve match below decides whether the values are right."""
    if not value:
        raise ECError("empty INTEGER")
    return int.from_bytes(value, "big")


def named_curve(p: int, a: int, b: int, gx: int, gy: int, n: int, h: int | None) -> Curve | None:
    """The curve of the table with exactly these domain parameters (``h`` None: not given)."""
    for curve in CURVES.values():
        if (
            (curve.p, curve.b, curve.gx, curve.gy, curve.n) == (p, b, gx, gy, n)
            and curve.a % p == a % p
            and (h is None or h == curve.h)
        ):
            return curve
    return None


_PRIME_FIELD = "1.2.840.10045.1.1"


def curve_from_parameters(der: bytes) -> Curve:
    """The curve of DER ECParameters (RFC 3279 / SEC 1 C.2): a namedCurve OID, or explicit
    SpecifiedECDomain parameters (version, prime-field fieldID, curve a/b, base point, order,
    optional cofactor) that must match a curve of ``CURVES``. ECError otherwise."""
    try:
        outer = tlv.parse(der)
        if outer.tag == 0x06:
            oid = oid_from_der(outer.value)
            for name, known in CURVE_OIDS.items():
                if known == oid:
                    return CURVES[name]
            raise ECError(f"unsupported named curve {oid}")
        if outer.tag == 0x05:
            raise ECError("implicitlyCA domain parameters are not supported")
        if outer.tag != 0x30:
            raise ECError(f"ECParameters: unexpected tag {outer.tag:X}")
        fields = outer.children()
        if len(fields) < 5 or [f.tag for f in fields[:5]] != [0x02, 0x30, 0x30, 0x04, 0x02]:
            raise ECError("explicit ECParameters: version, fieldID, curve, base, order expected")
        version = der_unsigned(fields[0].value)
        if version not in (1, 2, 3):
            raise ECError(f"explicit ECParameters: unknown version {version}")
        field_id = fields[1].children()
        if len(field_id) != 2 or field_id[0].tag != 0x06 or field_id[1].tag != 0x02:
            raise ECError("explicit ECParameters: malformed fieldID")
        field_type = oid_from_der(field_id[0].value)
        if field_type != _PRIME_FIELD:
            raise ECError(f"explicit ECParameters: field type {field_type} is not a prime field")
        p = der_unsigned(field_id[1].value)
        coefficients = fields[2].children()
        if len(coefficients) not in (2, 3) or [c.tag for c in coefficients[:2]] != [4, 4]:
            raise ECError("explicit ECParameters: malformed curve coefficients")
        a = int.from_bytes(coefficients[0].value, "big")
        b = int.from_bytes(coefficients[1].value, "big")
        n = der_unsigned(fields[4].value)
        h = None
        if len(fields) > 5:
            if fields[5].tag != 0x02:
                raise ECError("explicit ECParameters: cofactor is not an INTEGER")
            h = der_unsigned(fields[5].value)
        if not any(c.p == p for c in CURVES.values()):
            raise ECError(f"explicit ECParameters: a {p.bit_length()}-bit prime of no known curve")
        base = decode_point(Curve("explicit", p, a, b, 0, 0, n, h or 1), fields[3].value)
        curve = named_curve(p, a, b, base[0], base[1], n, h)
    except tlv.TLVError as exc:
        raise ECError(f"malformed ECParameters: {exc}") from exc
    if curve is None:
        raise ECError("explicit ECParameters match no supported named curve")
    return curve


def curve_parameters(curve: Curve, explicit: bool = False) -> bytes:
    """DER ECParameters for ``curve``: the namedCurve OID, or the explicit form (version 1,
    with cofactor), as EF.DG14 of many documents carries it."""
    if not explicit:
        return tlv.encode(0x06, oid_to_der(curve.oid))
    size = curve.size

    def integer(value: int) -> bytes:
        return tlv.encode(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))

    field_id = tlv.encode(0x30, tlv.encode(0x06, oid_to_der(_PRIME_FIELD)) + integer(curve.p))
    coefficients = tlv.encode(
        0x30,
        tlv.encode(0x04, (curve.a % curve.p).to_bytes(size, "big"))
        + tlv.encode(0x04, curve.b.to_bytes(size, "big")),
    )
    return tlv.encode(
        0x30,
        integer(1)
        + field_id
        + coefficients
        + tlv.encode(0x04, encode_point(curve, curve.generator))
        + integer(curve.n)
        + integer(curve.h),
    )
