"""ICAO 9303 Part 11 cryptography: BAC key derivation and mutual authentication, and secure
messaging (ISO/IEC 7816-4 SM with send sequence counter) with 3DES (BAC, PACE/CA with 3DES) or
AES (PACE and Chip Authentication with AES, Part 11 9.8.6.2), both sides of the channel.

The terminal side is what the kiosk uses; the card side serves the emulated eMRTD of the
tests and the demo. ``tests/test_card.py`` reproduces the worked examples of Part 11,
Appendix D byte for byte; ``tests/test_pace.py`` checks AES secure messaging against
recorded sessions. PACE and Chip Authentication themselves live in ``devices.icao.pace``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

from devices.exceptions import AccessDenied, CardError
from devices.icao import tlv

ENC, MAC = 1, 2  # KDF counters


class SecureMessagingError(CardError, ValueError):
    """A protected APDU that is malformed or fails its checksum: the session is over."""


def adjust_parity(key: bytes) -> bytes:
    """DES keys carry odd parity in the low bit of every byte."""
    return bytes((b & 0xFE) | ((bin(b >> 1).count("1") + 1) & 1) for b in key)


def derive_key(seed: bytes, counter: int) -> bytes:
    """3DES key (two-key, 16 bytes, parity adjusted) from a key seed (Part 11, 9.7.1)."""
    digest = hashlib.sha1(seed + counter.to_bytes(4, "big")).digest()  # noqa: S324 - as specified
    return adjust_parity(digest[:16])


def pad(data: bytes, block: int = 8) -> bytes:
    """ISO/IEC 9797-1 padding method 2."""
    data += b"\x80"
    return data + b"\x00" * (-len(data) % block)


def unpad(data: bytes) -> bytes:
    """Remove padding method 2; SecureMessagingError when it is not there."""
    stripped = data.rstrip(b"\x00")
    if not stripped or stripped[-1] != 0x80:
        raise SecureMessagingError("bad padding in encrypted data")
    return stripped[:-1]


def _k24(key: bytes) -> bytes:
    """A 1- or 2-key 3DES key spelled out as K1 K2 K3 (what ``cryptography`` wants)."""
    return key * 3 if len(key) == 8 else key + key[:8]


def _tdes(key: bytes) -> Cipher:
    return Cipher(TripleDES(_k24(key)), modes.CBC(b"\x00" * 8))


def encrypt(key: bytes, data: bytes) -> bytes:
    """3DES-CBC with a zero IV; ``data`` a multiple of 8 bytes."""
    e = _tdes(key).encryptor()
    return e.update(data) + e.finalize()


def decrypt(key: bytes, data: bytes) -> bytes:
    """3DES-CBC decryption with a zero IV."""
    if len(data) % 8:
        raise SecureMessagingError("encrypted data is not a whole number of blocks")
    d = _tdes(key).decryptor()
    return d.update(data) + d.finalize()


def mac(key: bytes, data: bytes) -> bytes:
    """ISO/IEC 9797-1 MAC algorithm 3 (retail MAC) with DES; ``data`` already padded."""
    ka, kb = key[:8], key[8:16]
    e = Cipher(TripleDES(_k24(ka)), modes.CBC(b"\x00" * 8)).encryptor()
    last = (e.update(data) + e.finalize())[-8:]
    d = Cipher(TripleDES(_k24(kb)), modes.ECB()).decryptor()  # noqa: S305 - one block, as specified
    step = d.update(last) + d.finalize()
    e2 = Cipher(TripleDES(_k24(ka)), modes.ECB()).encryptor()  # noqa: S305
    return e2.update(step) + e2.finalize()


def _aes_key(key: bytes) -> algorithms.AES:
    if len(key) not in (16, 24, 32):
        raise SecureMessagingError(f"an AES key has 16, 24 or 32 bytes, not {len(key)}")
    return algorithms.AES(key)


def _aes(key: bytes, mode: modes.Mode) -> Cipher:
    return Cipher(_aes_key(key), mode)


def aes_encrypt(key: bytes, data: bytes, iv: bytes = b"\x00" * 16) -> bytes:
    """AES-CBC (zero IV unless given); ``data`` a multiple of 16 bytes."""
    if len(data) % 16:
        raise SecureMessagingError("data to encrypt is not a whole number of AES blocks")
    e = _aes(key, modes.CBC(iv)).encryptor()
    return e.update(data) + e.finalize()


def aes_decrypt(key: bytes, data: bytes, iv: bytes = b"\x00" * 16) -> bytes:
    """AES-CBC decryption (zero IV unless given)."""
    if len(data) % 16:
        raise SecureMessagingError("encrypted data is not a whole number of AES blocks")
    d = _aes(key, modes.CBC(iv)).decryptor()
    return d.update(data) + d.finalize()


def aes_block(key: bytes, block: bytes) -> bytes:
    """One block of AES-ECB encryption (the IV of AES secure messaging is E(KSenc, SSC))."""
    e = _aes(key, modes.ECB()).encryptor()  # noqa: S305 - one block, as specified
    return e.update(block) + e.finalize()


def aes_cmac(key: bytes, data: bytes) -> bytes:
    """AES-CMAC (NIST SP 800-38B), all 16 bytes; callers truncate to 8 as Part 11 says."""
    c = CMAC(_aes_key(key))
    c.update(data)
    return c.finalize()


CIPHERS = ("3DES", "AES")

Transmit = Callable[[bytes], tuple[bytes, int]]  # command APDU -> (data, status word)


@dataclass
class SecureChannel:
    """Session keys and send sequence counter of one secure-messaging session.

    ``cipher`` "3DES": 8-byte blocks and SSC, 3DES-CBC with a zero IV, retail MAC (BAC, and
    PACE / Chip Authentication with 3DES). "AES": 16-byte blocks and SSC, AES-CBC with
    IV = AES(KSenc, SSC), AES-CMAC truncated to 8 bytes (Part 11, 9.8.6.2)."""

    ks_enc: bytes
    ks_mac: bytes
    ssc: int
    cipher: str = "3DES"

    def __post_init__(self) -> None:
        if self.cipher not in CIPHERS:
            raise ValueError(f"cipher must be one of {CIPHERS}, not {self.cipher!r}")

    @property
    def block(self) -> int:
        """Block size in bytes: 8 (3DES) or 16 (AES); the SSC is this long too."""
        return 16 if self.cipher == "AES" else 8

    def _next(self) -> bytes:
        bits = 8 * self.block
        self.ssc = (self.ssc + 1) % (1 << bits)
        return self.ssc.to_bytes(self.block, "big")

    def _encrypt(self, ssc: bytes, data: bytes) -> bytes:
        if self.cipher == "AES":
            return aes_encrypt(self.ks_enc, pad(data, 16), aes_block(self.ks_enc, ssc))
        return encrypt(self.ks_enc, pad(data))

    def _decrypt(self, ssc: bytes, data: bytes) -> bytes:
        if self.cipher == "AES":
            return unpad(aes_decrypt(self.ks_enc, data, aes_block(self.ks_enc, ssc)))
        return unpad(decrypt(self.ks_enc, data))

    def _mac(self, data: bytes) -> bytes:
        """The 8-byte checksum of DO8E over ``data`` (SSC first), padded here."""
        if self.cipher == "AES":
            return aes_cmac(self.ks_mac, pad(data, 16))[:8]
        return mac(self.ks_mac, pad(data))

    def _plain_data(self, ssc: bytes, by_tag: dict[int, tlv.TLV]) -> bytes:
        """The decrypted data of DO87 (padding indicator 01) or DO85 (odd INS), if any."""
        if 0x87 in by_tag:
            enc = by_tag[0x87].value
            if not enc or enc[0] != 0x01:
                raise SecureMessagingError("unknown padding indicator in DO87")
            return self._decrypt(ssc, enc[1:])
        if 0x85 in by_tag:
            return self._decrypt(ssc, by_tag[0x85].value)
        return b""

    # ---------------------------------------------------------------- terminal side
    def wrap_command(self, apdu: bytes) -> bytes:
        """Protect a plain command APDU (short or extended) for the card."""
        cla, ins, p1, p2, data, le = split_command(apdu)
        header = bytes([cla | 0x0C, ins, p1, p2])
        ssc = self._next()
        body = b""
        if data:  # odd INS (BER-TLV data): DO85 without the padding-indicator byte
            enc = self._encrypt(ssc, data)
            body += tlv.encode(0x85, enc) if ins & 1 else tlv.encode(0x87, b"\x01" + enc)
        if le is not None:
            body += tlv.encode(0x97, le_bytes(le))
        cc = self._mac(ssc + pad(header, self.block) + body)
        body += tlv.encode(0x8E, cc)
        extended = len(body) > 255 or (le or 0) > 256
        return (
            header + lc_bytes(len(body), extended) + body + (b"\x00\x00" if extended else b"\x00")
        )

    def unwrap_response(self, response: bytes) -> tuple[bytes, int]:
        """Check and decrypt a protected response: (plain data, status word). The status word
        is DO99's; a response without DO99 (Part 11 allows it) takes the trailer's."""
        if len(response) < 2:
            raise SecureMessagingError("response shorter than a status word")
        body, outer = response[:-2], int.from_bytes(response[-2:], "big")
        if not body:  # the card answered in plain: an SM error or a refused command
            if outer in (0x6987, 0x6988):
                raise SecureMessagingError(f"card rejected secure messaging ({outer:04X})")
            return b"", outer  # a plain refusal: the card did not count a response
        try:
            objects = tlv.parse_all(body)
        except tlv.TLVError as exc:
            raise SecureMessagingError(f"malformed protected response: {exc}") from exc
        by_tag = {o.tag: o for o in objects}
        if 0x8E not in by_tag:
            raise SecureMessagingError("protected response lacks its status or checksum")
        covered = b"".join(
            tlv.encode(o.tag, o.value) for o in objects if o.tag in (0x85, 0x87, 0x99)
        )
        ssc = self._next()
        if not hmac.compare_digest(self._mac(ssc + covered), by_tag[0x8E].value):
            raise SecureMessagingError("checksum of the card's response does not verify")
        if 0x99 not in by_tag:
            return self._plain_data(ssc, by_tag), outer
        sw_do = by_tag[0x99].value
        if len(sw_do) != 2:
            raise SecureMessagingError("status data object is not 2 bytes")
        return self._plain_data(ssc, by_tag), int.from_bytes(sw_do, "big")

    # -------------------------------------------------------------------- card side
    def unwrap_command(self, apdu: bytes) -> bytes:
        """Card side: check and decrypt a protected command into a plain APDU."""
        cla, ins, p1, p2, body, _ = split_command(apdu)
        if not cla & 0x0C:
            raise SecureMessagingError("command is not protected")
        try:
            objects = tlv.parse_all(body or b"")
        except tlv.TLVError as exc:
            raise SecureMessagingError(f"malformed protected command: {exc}") from exc
        by_tag = {o.tag: o for o in objects}
        if 0x8E not in by_tag:
            raise SecureMessagingError("protected command lacks its checksum")
        header = bytes([cla, ins, p1, p2])
        covered = b"".join(
            tlv.encode(o.tag, o.value) for o in objects if o.tag in (0x85, 0x87, 0x97)
        )
        ssc = self._next()
        expected = self._mac(ssc + pad(header, self.block) + covered)
        if not hmac.compare_digest(expected, by_tag[0x8E].value):
            raise SecureMessagingError("checksum of the command does not verify")
        data = self._plain_data(ssc, by_tag)
        le = None
        if 0x97 in by_tag:
            raw = by_tag[0x97].value
            le = int.from_bytes(raw, "big") or (256 if len(raw) <= 1 else 65536)
        return build_command(cla & 0xF0, ins, p1, p2, data, le)

    def wrap_response(self, data: bytes, sw: int, odd_ins: bool = False) -> bytes:
        """Card side: protect a response."""
        ssc = self._next()
        body = b""
        if data:
            enc = self._encrypt(ssc, data)
            body += tlv.encode(0x85, enc) if odd_ins else tlv.encode(0x87, b"\x01" + enc)
        body += tlv.encode(0x99, sw.to_bytes(2, "big"))
        body += tlv.encode(0x8E, self._mac(ssc + body))
        return body + b"\x90\x00"


def le_bytes(le: int) -> bytes:
    """Le as it appears in DO97: one byte up to 256 (0 = 256), two bytes beyond."""
    if le <= 256:
        return bytes([le % 256])
    return (le % 65536).to_bytes(2, "big")


def lc_bytes(n: int, extended: bool) -> bytes:
    """The Lc field (short or extended)."""
    return b"\x00" + n.to_bytes(2, "big") if extended else bytes([n])


def build_command(
    cla: int, ins: int, p1: int, p2: int, data: bytes = b"", le: int | None = None
) -> bytes:
    """A plain command APDU, extended when data or Le need it (ISO/IEC 7816-3 cases 1-4)."""
    extended = len(data) > 255 or (le or 0) > 256
    out = bytes([cla, ins, p1, p2])
    if data:
        out += lc_bytes(len(data), extended) + data
    if le is not None:
        if extended:
            out += (b"" if data else b"\x00") + (le % 65536).to_bytes(2, "big")
        else:
            out += bytes([le % 256])
    return out


def split_command(apdu: bytes) -> tuple[int, int, int, int, bytes | None, int | None]:
    """(CLA, INS, P1, P2, data, Le) of a command APDU; ValueError if the lengths disagree."""
    if len(apdu) < 4:
        raise SecureMessagingError("command APDU shorter than its header")
    cla, ins, p1, p2 = apdu[:4]
    rest = apdu[4:]
    if not rest:
        return cla, ins, p1, p2, None, None
    if len(rest) == 1:
        return cla, ins, p1, p2, None, rest[0] or 256
    if rest[0] != 0:  # short case 3 or 4
        n = rest[0]
        if len(rest) == 1 + n:
            return cla, ins, p1, p2, rest[1:], None
        if len(rest) == 2 + n:
            return cla, ins, p1, p2, rest[1 : 1 + n], rest[-1] or 256
        raise SecureMessagingError("command APDU length does not match Lc")
    if len(rest) == 3:  # extended case 2
        return cla, ins, p1, p2, None, int.from_bytes(rest[1:], "big") or 65536
    n = int.from_bytes(rest[1:3], "big")
    if n == 0:
        raise SecureMessagingError("extended Lc of zero")
    if len(rest) == 3 + n:
        return cla, ins, p1, p2, rest[3:], None
    if len(rest) == 5 + n:
        return cla, ins, p1, p2, rest[3 : 3 + n], int.from_bytes(rest[-2:], "big") or 65536
    raise SecureMessagingError("command APDU length does not match its extended Lc")


def session_keys(seed: bytes, rnd_ic: bytes, rnd_ifd: bytes) -> SecureChannel:
    """Session keys and initial SSC after mutual authentication."""
    return SecureChannel(
        derive_key(seed, ENC),
        derive_key(seed, MAC),
        int.from_bytes(rnd_ic[4:] + rnd_ifd[4:], "big"),
    )


def bac(
    transmit: Transmit, seed: bytes, rnd_ifd: bytes | None = None, k_ifd: bytes | None = None
) -> SecureChannel:
    """Basic Access Control, terminal side (Part 11, 4.3): GET CHALLENGE, EXTERNAL
    AUTHENTICATE, key agreement. ``rnd_ifd``/``k_ifd`` are random unless given (tests)."""
    k_enc, k_mac = derive_key(seed, ENC), derive_key(seed, MAC)
    rnd_ic, sw = transmit(bytes.fromhex("0084000008"))
    if sw != 0x9000 or len(rnd_ic) != 8:
        raise SecureMessagingError(f"GET CHALLENGE failed ({sw:04X})")
    rnd_ifd = rnd_ifd or os.urandom(8)
    k_ifd = k_ifd or os.urandom(16)
    e_ifd = encrypt(k_enc, rnd_ifd + rnd_ic + k_ifd)
    m_ifd = mac(k_mac, pad(e_ifd))
    resp, sw = transmit(build_command(0x00, 0x82, 0x00, 0x00, e_ifd + m_ifd, 40))
    # 6300 on most chips; some answer a wrong key with 6988 (its cryptogram, being wrong,
    # reads to them as bad secure-messaging data): either way the key is what is wrong
    if sw in (0x6300, 0x6982, 0x6988) or (sw & 0xFFF0) == 0x63C0:
        raise AccessDenied("the card did not accept the access key (check the MRZ)")
    if sw != 0x9000 or len(resp) != 40:
        raise SecureMessagingError(f"EXTERNAL AUTHENTICATE failed ({sw:04X})")
    if not hmac.compare_digest(mac(k_mac, pad(resp[:32])), resp[32:]):
        raise SecureMessagingError("the card's authentication cryptogram does not verify")
    plain = decrypt(k_enc, resp[:32])
    if plain[:8] != rnd_ic or plain[8:16] != rnd_ifd:
        raise SecureMessagingError("the card answered a different challenge")
    k_ic = plain[16:32]
    seed_s = bytes(a ^ b for a, b in zip(k_ifd, k_ic, strict=True))
    return session_keys(seed_s, rnd_ic, rnd_ifd)


def bac_card_response(
    seed: bytes, rnd_ic: bytes, command_data: bytes, k_ic: bytes | None = None
) -> tuple[bytes, SecureChannel]:
    """Card side of EXTERNAL AUTHENTICATE: the 40-byte answer and the session.
    AccessDenied when the terminal's cryptogram was not made with this card's key."""
    k_enc, k_mac = derive_key(seed, ENC), derive_key(seed, MAC)
    if len(command_data) != 40:
        raise AccessDenied("EXTERNAL AUTHENTICATE needs 40 bytes")
    e_ifd, m_ifd = command_data[:32], command_data[32:]
    if not hmac.compare_digest(mac(k_mac, pad(e_ifd)), m_ifd):
        raise AccessDenied("terminal cryptogram does not verify")
    plain = decrypt(k_enc, e_ifd)
    rnd_ifd, challenge, k_ifd = plain[:8], plain[8:16], plain[16:32]
    if challenge != rnd_ic:
        raise AccessDenied("terminal answered a different challenge")
    k_ic = k_ic or os.urandom(16)
    r = encrypt(k_enc, rnd_ic + rnd_ifd + k_ic)
    seed_s = bytes(a ^ b for a, b in zip(k_ifd, k_ic, strict=True))
    return r + mac(k_mac, pad(r)), session_keys(seed_s, rnd_ic, rnd_ifd)
