"""ID card: ICAO 9303 crypto against the standard's worked examples, MRZ rules, LDS parsing,
passive authentication, and whole reads through the real PC/SC stack (pcscd + vpcd) with an
emulated eMRTD; every parser fuzzed."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices import card
from devices import cli as devices_cli
from devices.icao import lds, mrz, secure, tlv
from devices.simulation import emrtd

READER = "Virtual PCD 00 00"  # vpcd's first slot: TCP 35963
# ICAO 9303 Part 5 / Part 4 specimen MRZs
TD1 = (
    "I<UTOD231458907<<<<<<<<<<<<<<<\n7408122F1204159UTO<<<<<<<<<<<6\nERIKSSON<<ANNA<MARIA<<<<<<<<<<"
)
TD3 = "P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<\nL898902C36UTO7408122F1204159ZE184226B<<<<<10"


# ------------------------------------------------------------ worked examples (Part 11)
def test_bac_key_derivation_matches_icao_worked_example():
    key = mrz.MRZKey("L898902C", "690806", "940623")
    assert key.information == "L898902C<369080619406236"
    seed = key.seed()
    assert seed.hex().upper() == "239AB9CB282DAF66231DC5A4DF6BFBAE"
    assert secure.derive_key(seed, secure.ENC).hex().upper() == "AB94FDECF2674FDFB9B391F85D7F76F2"
    assert secure.derive_key(seed, secure.MAC).hex().upper() == "7962D9ECE03D1ACD4C76089DCE131543"


def test_bac_and_secure_messaging_match_icao_worked_example():
    seed = bytes.fromhex("239AB9CB282DAF66231DC5A4DF6BFBAE")
    answers = [
        bytes.fromhex("4608F91988702212"),
        bytes.fromhex(
            "46B9342A41396CD7386BF5803104D7CEDC122B9132139BAF2EEDC94EE178534F2F2D235D074D7449"
        ),
    ]
    sent = []

    def transmit(apdu: bytes) -> tuple[bytes, int]:
        sent.append(apdu.hex().upper())
        return answers.pop(0), 0x9000

    ch = secure.bac(
        transmit,
        seed,
        rnd_ifd=bytes.fromhex("781723860C06C226"),
        k_ifd=bytes.fromhex("0B795240CB7049B01C19B33E32804F0B"),
    )
    assert sent == [
        "0084000008",
        "0082000028"
        "72C29C2371CC9BDB65B779B8E8D37B29ECC154AA56A8799FAE2F498F76ED92F2"
        "5F1448EEA8AD90A728",
    ]
    assert ch.ks_enc.hex().upper() == "979EC13B1CBFE9DCD01AB0FED307EAE5"
    assert ch.ks_mac.hex().upper() == "F1CB1F1FB5ADF208806B89DC579DC1F8"
    assert ch.ssc == 0x887022120C06C226
    # SELECT EF.COM, READ BINARY 4 bytes, READ BINARY the remaining 18
    steps = [
        (
            "00A4020C02011E",
            "0CA4020C158709016375432908C044F68E08BF8B92D635FF24F800",
            "990290008E08FA855A5D4C50A8ED9000",
            "",
        ),
        (
            "00B0000004",
            "0CB000000D9701048E08ED6705417E96BA5500",
            "8709019FF0EC34F9922651990290008E08AD55CC17140B2DED9000",
            "60145F01",
        ),
        (
            "00B0000412",
            "0CB000040D9701128E082EA28A70F3C7B53500",
            "871901FB9235F4E4037F2327DCC8964F1F9B8C30F42C8E2FFF224A99029000"
            "8E08C8B2787EAEA07D749000",
            "04303130365F36063034303030305C026175",
        ),
    ]
    for plain, protected, response, data in steps:
        assert ch.wrap_command(bytes.fromhex(plain)).hex().upper() == protected
        assert ch.unwrap_response(bytes.fromhex(response)) == (bytes.fromhex(data), 0x9000)
    assert ch.ssc == 0x887022120C06C22C


def test_secure_messaging_rejects_tampered_and_replayed_responses():
    ch = secure.SecureChannel(
        bytes.fromhex("979EC13B1CBFE9DCD01AB0FED307EAE5"),
        bytes.fromhex("F1CB1F1FB5ADF208806B89DC579DC1F8"),
        0x887022120C06C227,
    )
    good = bytes.fromhex("990290008E08FA855A5D4C50A8ED9000")
    with pytest.raises(secure.SecureMessagingError, match="checksum"):
        ch.unwrap_response(good[:-3] + bytes([good[-3] ^ 1]) + good[-2:])
    ch.ssc = 0x887022120C06C227
    ch.unwrap_response(good)
    with pytest.raises(secure.SecureMessagingError):  # same answer again: SSC moved on
        ch.unwrap_response(good)
    with pytest.raises(secure.SecureMessagingError, match="lacks"):
        ch.unwrap_response(bytes.fromhex("99029000") + b"\x90\x00")


# --------------------------------------------------------------------------------- MRZ
def test_mrz_td1_and_td3_parse_with_check_digits():
    card_mrz = mrz.parse(TD1)
    assert (card_mrz.document_type, card_mrz.document_number) == ("I", "D23145890")
    assert (card_mrz.primary_identifier, card_mrz.secondary_identifier) == (
        "ERIKSSON",
        "ANNA MARIA",
    )
    assert card_mrz.birth_date == dt.date(1974, 8, 12) and card_mrz.sex == "F"
    passport = mrz.parse(TD3)
    assert passport.document_number == "L898902C3" and passport.optional_data == "ZE184226B"
    assert passport.access_key().information == "L898902C3674081221204159"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (TD1.replace("D231458907", "D231458908"), "document number"),
        (TD1.replace("7408122F", "7408123F"), "date of birth"),
        (TD1.replace("1204159UTO", "1204158UTO"), "date of expiry"),
        (TD1.replace("<<<<<<6\n", "<<<<<<5\n"), "composite"),
        (TD3.replace("ZE184226B<<<<<10", "ZE184226B<<<<<20"), "personal number"),
        ("P<UTO\nL898902C", "3 lines of 30"),
        (TD1.lower().replace("<", "?"), "only A-Z"),
    ],
)
def test_wrong_mrz_is_refused_before_touching_the_card(text, message):
    with pytest.raises(mrz.MRZError, match=message):
        mrz.parse(text)


def test_typed_access_keys_are_validated():
    with pytest.raises(mrz.MRZError):
        mrz.MRZKey("AB12", "7408", "120415")
    with pytest.raises(mrz.MRZError):
        mrz.MRZKey("AB12", "740812", "121345")
    with pytest.raises(mrz.MRZError):
        mrz.CANKey("12345")
    assert mrz.MRZKey("d231458907", "740812", "120415").document_number == "D231458907"


# ------------------------------------------------------------------- documents and PKI
@pytest.fixture(scope="module")
def face_jpeg(faces_dir: Path) -> tuple[bytes, tuple[int, int]]:
    img = cv2.imread(str(sorted(faces_dir.glob("*.jpg"))[0]))
    img = cv2.resize(img, (360, 480))
    ok, jpg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok
    return jpg.tobytes(), (360, 480)


@pytest.fixture(scope="module")
def pki() -> emrtd.DocumentPKI:
    return emrtd.DocumentPKI.create()


@pytest.fixture(scope="module")
def document(face_jpeg, pki) -> emrtd.Document:
    return emrtd.issue_document(TD1, *face_jpeg, pki, full_name="ERIKSSON<<ANNA MARIA")


def _groups(doc: emrtd.Document) -> dict[int, bytes]:
    by_fid = {fid: name for name, (fid, _) in lds.FILES.items()}
    return {
        int(by_fid[fid][2:]): raw for fid, raw in doc.files.items() if by_fid[fid].startswith("DG")
    }


def test_passive_authentication_states(document, face_jpeg, pki, tmp_path):
    trust = lds.TrustStore([pki.csca])
    sod = lds.parse_sod(document.files[0x011D])
    assert lds.passive_authentication(sod, _groups(document), trust).status == "valid"
    # a data group changed after signing
    forged = emrtd.issue_document(TD1, *face_jpeg, pki, tamper_dg=2)
    result = lds.passive_authentication(lds.parse_sod(forged.files[0x011D]), _groups(forged), trust)
    assert result.status == "invalid" and "DG2" in result.reason
    # a signer from another country's CSCA
    other = emrtd.DocumentPKI.create(country="UT")
    assert lds.passive_authentication(
        sod, _groups(document), lds.TrustStore([other.csca])
    ).status == ("unknown_csca")
    # an expired document signer
    old = emrtd.DocumentPKI.create(ds_valid_days=(-400, -10))
    stale = emrtd.issue_document(TD1, *face_jpeg, old)
    result = lds.passive_authentication(
        lds.parse_sod(stale.files[0x011D]), _groups(stale), lds.TrustStore([old.csca])
    )
    assert result.status == "invalid" and "validity" in result.reason
    # a signature made by a key that is not the certificate's
    impostor = emrtd.DocumentPKI(pki.csca_key, pki.csca, other.ds_key, pki.ds)
    bad = emrtd.issue_document(TD1, *face_jpeg, impostor)
    result = lds.passive_authentication(lds.parse_sod(bad.files[0x011D]), _groups(bad), trust)
    assert result.status == "invalid" and "signature" in result.reason
    # trust lists load from a folder of PEM / DER certificates
    (tmp_path / "csca.pem").write_bytes(pki.csca_pem())
    assert lds.TrustStore.from_folder(tmp_path).issuers_of(pki.ds) == [pki.csca]
    # a file that is no certificate is reported, the rest still loads
    (tmp_path / "junk.der").write_bytes(b"not a certificate")
    store = lds.TrustStore.from_folder(tmp_path)
    assert store.certificates == [pki.csca] and store.report.skipped[0].file == "junk.der"


def test_lds_files_parse(document, face_jpeg):
    version, present = lds.parse_com(document.files[0x011E])
    assert version == "0107" and present == [1, 2, 11]
    assert lds.parse_dg1(document.files[0x0101]).document_number == "D23145890"
    image = lds.parse_dg2(document.files[0x0102])
    assert image.data == face_jpeg[0] and image.mime == "image/jpeg"
    assert (image.width, image.height) == (360, 480)


# ----------------------------------------------------------------------- PC/SC stack
@pytest.fixture
def inserted(pcscd, document) -> Iterator[emrtd.EmulatedChip]:
    chip = emrtd.EmulatedChip(document)
    vc = emrtd.VirtualCard(chip)
    vc.insert()
    card.wait_for_card(READER, timeout=10)
    yield chip
    vc.remove()
    assert card.wait_for_removal(READER, timeout=10)


def test_readers_are_listed_through_pcscd(pcscd):
    assert READER in card.readers()


def test_read_document_through_pcsc(inserted, pki, face_jpeg):
    doc = card.read_document(READER, inserted.document.key, lds.TrustStore([pki.csca]))
    assert doc.passive_authentication.status == "valid"
    assert doc.mrz.document_number == "D23145890" and doc.full_name == "ERIKSSON, ANNA MARIA"
    assert sorted(doc.data_groups) == [1, 2, 11]
    img = cv2.imdecode(np.frombuffer(doc.face_image, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (480, 360, 3)
    assert {"access_control", "read_DG2", "passive_authentication", "total"} <= set(doc.timings)
    assert doc.access_control == "BAC" and doc.chip_authentication == "not_supported"
    summary = doc.summary()
    assert "D23145890" not in str(summary) and "ERIKSSON" not in str(summary)
    assert "ERIKSSON" in str(doc.summary(show_personal=True))
    # extended-length reads give the same bytes in fewer commands
    before = len(inserted.commands)
    again = card.read_document(READER, inserted.document.key, lds.TrustStore(), chunk=4000)
    assert again.data_groups == doc.data_groups
    assert again.passive_authentication.status == "unknown_csca"
    assert len(inserted.commands) - before < before


def test_two_processes_never_read_each_others_card(pcscd, document, pki, face_jpeg, tmp_path):
    """vpcd has one slot for the machine. Another process (a test run beside the demo, a second
    daemon) holds its card there: this process's card waits for the slot instead of both
    being "inserted" at once and each read with the other's key (the chip refuses BAC:
    ``card_access_denied``, seen once in a demo run)."""
    other_mrz = mrz.td1("ZX9876543", "Benali", "Amine", "900215", "M", "341231")
    child = (
        "import sys, time\n"
        "from devices import card\n"
        "from devices.icao import lds, mrz\n"
        "from devices.simulation import emrtd\n"
        "pki = emrtd.DocumentPKI.create()\n"
        f"doc = emrtd.issue_document({other_mrz!r}, open(sys.argv[1], 'rb').read(), "
        "(360, 480), pki)\n"
        "vc = emrtd.VirtualCard(emrtd.EmulatedChip(doc))\n"
        "vc.insert()\n"
        "card.wait_for_card(None, timeout=10)\n"
        "print('IN', flush=True)\n"
        "time.sleep(2)\n"
        "r = card.read_document(None, doc.key, lds.TrustStore([pki.csca]))\n"
        "print('READ', r.passive_authentication.status, r.mrz.document_number, flush=True)\n"
        "vc.remove()\n"
        "print('OUT', flush=True)\n"
    )
    jpeg = tmp_path / "face.jpg"
    jpeg.write_bytes(face_jpeg[0])
    proc = subprocess.Popen(
        [sys.executable, "-c", child, str(jpeg)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "IN"
    vc = emrtd.VirtualCard(emrtd.EmulatedChip(document))
    vc.insert()  # waits until the other process's card is gone
    try:
        for _ in range(40):
            try:
                doc = card.read_document(READER, document.key, lds.TrustStore([pki.csca]))
                break
            except card.NoCard:
                time.sleep(0.25)
        assert doc.mrz.document_number == "D23145890"  # this card, not the other one
    finally:
        vc.remove()
    out = proc.stdout.read()
    assert proc.wait(30) == 0
    assert "READ valid ZX9876543" in out and "OUT" in out


def test_files_past_32_kb_are_read_with_odd_read_binary(pcscd, faces_dir, pki):
    img = cv2.resize(cv2.imread(str(sorted(faces_dir.glob("*.jpg"))[1])), (720, 960))
    jpeg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    assert len(jpeg) > 0x8000
    doc = emrtd.issue_document(TD1, jpeg, (720, 960), pki)
    chip = emrtd.EmulatedChip(doc)
    with emrtd.VirtualCard(chip):
        card.wait_for_card(READER, timeout=10)
        for chunk in (0xDF, 4000):
            read = card.read_document(READER, doc.key, lds.TrustStore([pki.csca]), chunk=chunk)
            assert read.face_image == jpeg and read.passive_authentication.valid
    assert b"\xb1" in chip.commands
    card.wait_for_removal(READER, timeout=10)


def test_extended_reads_fall_back_to_short_ones_on_older_chips(pcscd, document, pki):
    chip = emrtd.EmulatedChip(document, extended_length=False)
    with emrtd.VirtualCard(chip):
        card.wait_for_card(READER, timeout=10)
        read = card.read_document(READER, document.key, lds.TrustStore([pki.csca]), chunk=4000)
        assert read.passive_authentication.valid and sorted(read.data_groups) == [1, 2, 11]
    card.wait_for_removal(READER, timeout=10)


def test_wrong_mrz_is_access_denied_once_without_retries(inserted, pki):
    wrong = mrz.MRZKey("D23145891", "740812", "120415")
    with pytest.raises(card.AccessDenied, match="document number"):
        card.read_document(READER, wrong, lds.TrustStore([pki.csca]))
    assert inserted.commands.count(b"\x82") == 1 and inserted.failures == 1
    # the right key still works, and resets the chip's failure count
    card.read_document(READER, inserted.document.key, lds.TrustStore([pki.csca]))
    assert inserted.failures == 0


def test_card_removed_mid_read_is_a_clear_error(pcscd, document, pki):
    class Pulled(emrtd.EmulatedChip):
        def process(self, apdu: bytes) -> bytes:
            if self.commands.count(b"\xb0") >= 6:  # well into the data groups
                threading_remove()
            return super().process(apdu)

    chip = Pulled(document)
    vc = emrtd.VirtualCard(chip)

    def threading_remove() -> None:
        sock = vc._sock
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)

    vc.insert()
    card.wait_for_card(READER, timeout=10)
    with pytest.raises((card.CardRemoved, card.ChipError)):
        card.read_document(READER, document.key, lds.TrustStore([pki.csca]))
    vc.remove()
    assert card.wait_for_removal(READER, timeout=10)
    with pytest.raises(card.NoCard):
        card.read_document(READER, document.key, lds.TrustStore([pki.csca]))


# ------------------------------------------------------------- PACE, CA, AA, deadlines
CAN = "123456"


@pytest.fixture(scope="module")
def cnie(face_jpeg, pki) -> emrtd.Document:
    """A CNIE 2020 as the kiosk meets it: PACE only (CAN or MRZ), Chip and Active
    Authentication."""
    return emrtd.issue_document(
        TD1, *face_jpeg, pki, full_name="ERIKSSON<<ANNA MARIA", can=CAN, **emrtd.CNIE
    )


@contextlib.contextmanager
def on_reader(chip: emrtd.EmulatedChip) -> Iterator[emrtd.EmulatedChip]:
    vc = emrtd.VirtualCard(chip)
    vc.insert()
    try:
        card.wait_for_card(READER, timeout=10)
        yield chip
    finally:
        vc.remove()
        card.wait_for_removal(READER, timeout=10)


def test_cnie_is_read_with_pace_can_and_proves_its_chip_genuine(pcscd, cnie, pki):
    trust = lds.TrustStore([pki.csca])
    with on_reader(emrtd.EmulatedChip(cnie)) as chip:
        doc = card.read_document(READER, mrz.CANKey(CAN), trust, chunk=4000)
        # EF.CardAccess is read from the master file before anything else; then PACE
        assert chip.commands[:4] == [b"\xa4", b"\xb0", b"\x22", b"\x86"]
        assert b"\x82" not in chip.commands and b"\x84" not in chip.commands  # no BAC
        assert doc.access_control == "PACE-ECDH-GM-AES-128"
        assert doc.chip_authentication == "passed" and doc.active_authentication == "passed"
        assert doc.passive_authentication.valid and sorted(doc.data_groups) == [1, 2, 11, 14, 15]
        assert doc.mrz.document_number == "D23145890"
        assert {"card_access", "access_control", "chip_authentication"} <= set(doc.timings)
        assert {"active_authentication"} <= set(doc.timings)
        summary = doc.summary()
        assert summary["access_control"] == "PACE-ECDH-GM-AES-128" and "D23145890" not in str(
            summary
        )
        # the MRZ opens the same chip with PACE too (what the kiosk's camera reads)
        again = card.read_document(READER, cnie.key, trust)
        assert (
            again.access_control == "PACE-ECDH-GM-AES-128" and again.data_groups == doc.data_groups
        )


def test_wrong_can_is_access_denied_once(pcscd, cnie, pki):
    with on_reader(emrtd.EmulatedChip(cnie)) as chip:
        with pytest.raises(card.AccessDenied, match="CAN"):
            card.read_document(READER, mrz.CANKey("654321"), lds.TrustStore([pki.csca]))
        assert chip.failures == 1 and chip.commands.count(b"\x22") == 1
        card.read_document(READER, mrz.CANKey(CAN), lds.TrustStore([pki.csca]))
        assert chip.failures == 0


@pytest.mark.parametrize(
    ("protocol", "parameter", "name"),
    [
        ("0.4.0.127.0.7.2.2.4.2.1", 12, "PACE-ECDH-GM-3DES"),  # P-256, 3DES messaging
        ("0.4.0.127.0.7.2.2.4.2.4", 17, "PACE-ECDH-GM-AES-256"),  # brainpoolP512r1
        ("0.4.0.127.0.7.2.2.4.1.2", 0, "PACE-DH-GM-AES-128"),  # 1024-bit MODP group
    ],
)
def test_pace_variants_through_pcsc(pcscd, face_jpeg, pki, protocol, parameter, name):
    doc = emrtd.issue_document(
        TD1, *face_jpeg, pki, can=CAN, pace=[(protocol, parameter)], bac=False
    )
    with on_reader(emrtd.EmulatedChip(doc)):
        read = card.read_document(READER, doc.key, lds.TrustStore([pki.csca]))
    assert read.access_control == name and read.passive_authentication.valid


def test_unsupported_pace_is_named_never_check_the_mrz(pcscd, face_jpeg, pki):
    im = ("0.4.0.127.0.7.2.2.4.4.2", 13)  # Integrated Mapping: not implemented
    only = emrtd.issue_document(TD1, *face_jpeg, pki, can=CAN, pace=[im], bac=False)
    with on_reader(emrtd.EmulatedChip(only)) as chip:
        for key in (only.key, mrz.CANKey(CAN)):
            with pytest.raises(card.CardError, match="needs PACE-ECDH-IM-AES-128") as info:
                card.read_document(READER, key, lds.TrustStore([pki.csca]))
            assert info.value.code == "pace_unsupported"
        assert chip.failures == 0
    # a chip offering the same PACE and BAC is read with BAC
    both = emrtd.issue_document(TD1, *face_jpeg, pki, can=CAN, pace=[im], bac=True)
    with on_reader(emrtd.EmulatedChip(both)):
        read = card.read_document(READER, both.key, lds.TrustStore([pki.csca]))
        assert read.access_control == "BAC" and read.passive_authentication.valid
        with pytest.raises(card.CardError, match="needs PACE-ECDH-IM"):
            card.read_document(READER, mrz.CANKey(CAN), lds.TrustStore([pki.csca]))


def test_copied_chips_fail_chip_and_active_authentication(pcscd, cnie, pki):
    """A clone copies every file, signed EF.SOD included (passive authentication passes),
    but not the chip's private keys."""
    import dataclasses

    from devices.icao import active

    curve = cnie.chip_key[1]
    no_ca_key = dataclasses.replace(cnie, chip_key=(cnie.chip_key[0] + 1, curve))
    with on_reader(emrtd.EmulatedChip(no_ca_key)):
        with pytest.raises(card.ChipNotGenuine, match="chip authentication") as info:
            card.read_document(READER, mrz.CANKey(CAN), lds.TrustStore([pki.csca]))
        assert info.value.code == "not_authentic"
    no_aa_key = dataclasses.replace(cnie, aa_key=active.generate_key("ec"))
    with on_reader(emrtd.EmulatedChip(no_aa_key)):
        read = card.read_document(READER, mrz.CANKey(CAN), lds.TrustStore([pki.csca]))
    assert read.passive_authentication.valid and read.chip_authentication == "passed"
    assert (
        read.active_authentication == "failed" and "signature" in read.active_authentication_reason
    )


def test_wrong_mrz_answered_6988_still_says_check_the_mrz(pcscd, document, pki):
    wrong = mrz.MRZKey("D23145891", "740812", "120415")
    chip = emrtd.EmulatedChip(document, wrong_key_sw=0x6988)
    with on_reader(chip), pytest.raises(card.AccessDenied, match="document number"):
        card.read_document(READER, wrong, lds.TrustStore())


def test_a_silent_card_is_a_clear_error_within_the_command_timeout(pcscd, cnie, pki):
    gone = threading.Event()

    class Silent(emrtd.EmulatedChip):
        def process(self, apdu: bytes) -> bytes:
            if self.commands.count(b"\xb0") >= 8:
                gone.wait(30)  # stops answering until taken away
            return super().process(apdu)

    chip = Silent(cnie)
    vc = emrtd.VirtualCard(chip)
    vc.insert()
    try:
        card.wait_for_card(READER, timeout=10)
        t = time.monotonic()
        with pytest.raises(card.CardTooSlow, match="did not answer within 1 s") as info:
            card.read_document(READER, mrz.CANKey(CAN), lds.TrustStore(), command_timeout=1.0)
        assert time.monotonic() - t < 5 and info.value.code == "card_too_slow"
    finally:
        gone.set()
        vc.remove()
    assert card.wait_for_removal(READER, timeout=10)


def test_a_slow_card_hits_the_read_deadline_with_progress_shown(pcscd, document, pki):
    class Slow(emrtd.EmulatedChip):
        def process(self, apdu: bytes) -> bytes:
            time.sleep(0.05)
            return super().process(apdu)

    seen: list[tuple[str, int, int]] = []
    with on_reader(Slow(document)):
        t = time.monotonic()
        with pytest.raises(card.CardTooSlow, match="too slowly"):
            card.read_document(
                READER,
                document.key,
                lds.TrustStore(),
                deadline=1.5,
                progress=lambda *a: seen.append(a),
            )
        assert time.monotonic() - t < 3
        # DG2 was coming in, chunk by chunk, when time ran out
        dg2 = [done for name, done, _total in seen if name == "DG2"]
        assert len(dg2) >= 2 and dg2 == sorted(dg2)
        # the same card read with time enough: every file reported whole
        seen.clear()
        card.read_document(
            READER, document.key, lds.TrustStore(), progress=lambda *a: seen.append(a)
        )
        assert ("DG2", len(document.files[0x0102]), len(document.files[0x0102])) in seen


def test_a_malformed_file_header_is_a_chip_error(pcscd, document, pki, tmp_path, capsys):
    import dataclasses

    for header in (b"\x61\x85\x00\x00\x00\x00\x10", b"\xff\x01\x00", b"\x00\x01\x00"):
        files = dict(document.files) | {0x0101: header + bytes(16)}
        with on_reader(emrtd.EmulatedChip(dataclasses.replace(document, files=files))):
            with pytest.raises(card.ChipError, match="DG1"):
                card.read_document(READER, document.key, lds.TrustStore())
            args = ["card", "read", "--reader", READER, "--timeout", "5"]
            assert devices_cli.main([*args, "--mrz", *TD1.splitlines()]) == 2
            assert capsys.readouterr().err.startswith("error: DG1")


def test_card_events_are_reported(pcscd, document):
    seen: list[tuple[str, str]] = []
    before = set(threading.enumerate())
    stop = card.watch(lambda r: seen.append(("in", r)), lambda r: seen.append(("out", r)))
    try:
        with emrtd.VirtualCard(emrtd.EmulatedChip(document)):
            card.wait_for_card(READER, timeout=10)
            time.sleep(1.5)
        card.wait_for_removal(READER, timeout=10)
        deadline = time.monotonic() + 5
        while ("out", READER) not in seen and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop()
    assert ("in", READER) in seen and ("out", READER) in seen
    # nothing of the watch outlives stop(): pyscard's monitor thread stayed until exit and
    # printed tracebacks there once pcscd had stopped
    assert set(threading.enumerate()) <= before


def test_no_pcsc_service_is_a_clear_error(tmp_path):
    env = os.environ | {"PCSCLITE_CSOCK_NAME": str(tmp_path / "none.comm")}
    out = subprocess.run(
        [sys.executable, "-m", "devices.cli", "card", "readers"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "pcscd" in out.stderr


def test_cli_reads_without_personal_data_unless_asked(inserted, pki, tmp_path, capsys):
    (tmp_path / "csca.pem").write_bytes(pki.csca_pem())
    args = ["card", "read", "--reader", READER, "--trust", str(tmp_path), "--timeout", "5"]
    assert devices_cli.main([*args, "--mrz", *TD1.splitlines()]) == 0
    out = capsys.readouterr().out
    assert '"status": "valid"' in out and "ERIKSSON" not in out and "D2314589" not in out
    assert devices_cli.main([*args, "--show", "--mrz", "D23145890", "740812", "120415"]) == 0
    assert "ERIKSSON" in capsys.readouterr().out
    # a deadline no read can meet: the card is too slow for it, said in one line
    assert devices_cli.main([*args, "--deadline", "0.001", "--mrz", *TD1.splitlines()]) == 2
    assert capsys.readouterr().err.startswith("error: the card answers too slowly")
    assert devices_cli.main([*args, "--mrz", "D23145890", "740812", "121345"]) == 2
    assert "expiry" in capsys.readouterr().err
    assert devices_cli.main(["card", "readers"]) == 0
    assert READER in capsys.readouterr().out


# ------------------------------------------------------------------------------ fuzzing
# Inputs that once broke a parser, or sit on its edges: kept as a regression corpus.
CORPUS = [
    b"",
    b"\x00",
    b"\xff",
    b"\x5f",
    b"\x5f\x80",
    b"\x5f\x1f",
    b"\x61\x80",
    b"\x61\x85\x01\x00\x00\x00\x00",
    b"\x61\x84\xff\xff\xff\xff",
    b"\x61\x02\x5f\x1f",
    b"\x75\x03\x7f\x61\x00",
    b"\x75\x08\x7f\x61\x05\x02\x01\x01\x7f\x60\x00",
    b"\x77\x02\x30\x00",
    b"\x77\x04\x30\x02\x06\x00",
    b"\x60\x03\x5f\x01\x00",
    b"\x1f\xff\xff\xff\x01\x00",
]


def _parsers():
    return [
        tlv.parse,
        tlv.parse_all,
        tlv.header_length,
        lds.parse_com,
        lds.parse_dg1,
        lds.parse_dg2,
        lds.parse_sod,
    ]


def _survives(data: bytes) -> None:
    for fn in _parsers():
        with contextlib.suppress(tlv.TLVError, lds.LDSError, mrz.MRZError):
            fn(data)


@pytest.mark.parametrize("data", CORPUS)
def test_parsers_survive_the_regression_corpus(data):
    _survives(data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_parsers_survive_random_bytes(data):
    _survives(data)


def test_sod_with_an_unsupported_certificate_version_is_an_lds_error(document):
    # found by the fuzzer below: cryptography raises InvalidVersion, not ValueError
    raw = document.files[0x011D].replace(b"\xa0\x03\x02\x01\x02", b"\xa0\x03\x02\x01\x01", 1)
    with pytest.raises(lds.LDSError):
        lds.parse_sod(raw)


_FILES: dict[str, bytes] = {}


@pytest.fixture(scope="module")
def real_files(document) -> dict[str, bytes]:
    _FILES.update({n: document.files[lds.FILES[n][0]] for n in ("COM", "DG1", "DG2", "SOD")})
    return _FILES


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_parsers_survive_mutated_real_files(real_files, data):
    name = data.draw(st.sampled_from(sorted(real_files)))
    raw = bytearray(real_files[name])
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    _survives(bytes(raw[:cut]))
    _survives(bytes(raw))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_secure_messaging_and_apdu_parsing_survive_random_bytes(data):
    ch = secure.SecureChannel(b"k" * 16, b"m" * 16, 1)
    for fn in (ch.unwrap_response, ch.unwrap_command, secure.split_command):
        with contextlib.suppress(secure.SecureMessagingError):
            fn(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=0, max_size=60))
def test_emulated_chip_answers_malformed_apdus_with_a_status_word(document, data):
    chip = emrtd.EmulatedChip(document)
    chip.process(bytes.fromhex("00A4040C07A0000002471001"))
    response = chip.process(data)
    assert len(response) >= 2


def test_status_words_read_as_words():
    assert card.describe(0x6982) == "security status not satisfied"
    assert card.describe(0x6C10) == "wrong Le (card offers 16 bytes)"
    assert card.describe(0x63C2) == "verification failed, 2 tries left"
