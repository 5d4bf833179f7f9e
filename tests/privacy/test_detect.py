"""The detector: each kind's validator, valid and invalid, and no false positives on ordinary
text full of numbers."""

from __future__ import annotations

import pytest

from lockgate.privacy.detect import (
    BUILT_IN,
    Detector,
    is_card_number,
    is_iban,
    is_ssn,
    luhn_valid,
)

ALL = Detector(BUILT_IN)


def kinds(text: str) -> list[tuple[str, str]]:
    return [(f.kind, f.value) for f in ALL.find(text)]


@pytest.mark.parametrize("number", [
    "4111 1111 1111 1111", "4111-1111-1111-1111", "4111111111111111",  # Visa
    "5500 0000 0000 0004", "2223003122003222",  # Mastercard, old and 2-series
    "3782 822463 10005", "371449635398431",  # Amex
    "6011111111111117", "3530111333300000", "30569309025904", "6200000000000005",
])
def test_valid_card_numbers_are_found(number: str) -> None:
    assert is_card_number(number)
    assert kinds(f"card: {number}.") == [("credit_card", number)]


@pytest.mark.parametrize("number", [
    "4111 1111 1111 1112",  # Luhn fails
    "1234567812345670",  # Luhn passes, no issuer starts with 1
    "9999999999999995",  # nor with 9
    "411111111111",  # 12 digits: too short
])
def test_invalid_card_numbers_are_not(number: str) -> None:
    assert not is_card_number(number)
    assert kinds(f"number {number} here") == []


def test_luhn() -> None:
    assert luhn_valid("79927398713")
    assert not luhn_valid("79927398710")


@pytest.mark.parametrize("iban", [
    "GB82 WEST 1234 5698 7654 32", "GB82WEST12345698765432", "DE89 3704 0044 0532 0130 00",
    "FR14 2004 1010 0505 0001 3M02 606", "NL91ABNA0417164300", "NO9386011117947",
])
def test_valid_ibans_are_found(iban: str) -> None:
    assert is_iban(iban)
    assert kinds(f"pay to {iban} please") == [("iban", iban)]


@pytest.mark.parametrize("iban", [
    "GB82 WEST 1234 5698 7654 33",  # checksum fails
    "DE89 3704 0044 0532 0130",  # wrong length for DE
    "ZZ82 WEST 1234 5698 7654 32",  # no such country
])
def test_invalid_ibans_are_not(iban: str) -> None:
    assert not is_iban(iban)
    assert [k for k, _ in kinds(iban)] == []


@pytest.mark.parametrize("ssn", ["123-45-6789", "078-05-1120", "123 45 6789"])
def test_valid_ssns_are_found(ssn: str) -> None:
    assert is_ssn(ssn)
    assert kinds(f"SSN {ssn}.") == [("ssn", ssn)]


@pytest.mark.parametrize("ssn", ["000-12-3456", "666-12-3456", "912-12-3456", "123-00-4567",
                                 "123-45-0000"])
def test_invalid_ssns_are_not(ssn: str) -> None:
    assert not is_ssn(ssn)
    assert kinds(f"SSN {ssn}.") == []


@pytest.mark.parametrize(("text", "value"), [
    ("mail alice.smith+tag@example.co.uk now", "alice.smith+tag@example.co.uk"),
    ("call +1 415 555 2671 today", "+1 415 555 2671"),
    ("call +44 20 7946 0958", "+44 20 7946 0958"),
    ("call (415) 555-2671", "(415) 555-2671"),
    ("call 415-555-2671", "415-555-2671"),
    ("call 415.555.2671", "415.555.2671"),
    ("from 192.168.1.20 to", "192.168.1.20"),
    ("from 2001:db8::8a2e:370:7334 to", "2001:db8::8a2e:370:7334"),
    ("from fe80::1 to", "fe80::1"),
    ("mapped ::ffff:192.0.2.1 here", "::ffff:192.0.2.1"),
])
def test_other_kinds(text: str, value: str) -> None:
    assert [v for _, v in kinds(text)] == [value]


def test_only_the_kinds_asked_for() -> None:
    emails = Detector(["email"])
    text = "alice@example.com 4111 1111 1111 1111 10.0.0.1"
    assert [f.kind for f in emails.find(text)] == ["email"]
    assert list(Detector([]).find(text)) == []


# Ordinary text with numbers: nothing in it is personal data.
CORPUS = """\
Order #1234567890123 shipped on 2026-12-07T10:15:30Z (unix 1765102530, ms 1765102530123).
Invoice INV-2024-000123 totals $1,234.56; tax 19.99%; qty 250; SKU 4006381333931.
The run used 128000 tokens, prompt_tokens=15234 completion_tokens=842, latency 1834.5 ms.
Version 1.2.3 and 10.4.2.1-beta; build 20261207.1; python 3.11.7; port 8080; pid 48213.
Coordinates 48.8566, 2.3522; temperature -3.5 C; ratio 16:9; time 12:30:45 and 09:05.
Tracking 1Z999AA10123456784, UUID 123e4567-e89b-12d3-a456-426614174000, sha 9f86d081884c7d65.
Call me in 5 minutes; page 12 of 300; ISBN 978-3-16-148410-0; account 00123456.
A 16-digit order id 1234567812345678 and another 9876543210987654, step 1000000000000001.
Phone-like but not: 2026-12-07, 10-20-2030, 1.5.2026, 123-4567, ext 5555.
C++ std::vector<int> and a::b::c, IPv6-ish 12:34:56:78, MAC 00:1A:2B:3C:4D:5E.
Emails need an at sign: user at example dot com; @mention; a@b.
Haskell: length :: [a] -> Int; x :: Int. Bind to 0.0.0.0 or 127.0.0.1, or :: and ::1 for IPv6.
"""


def test_no_false_positives_on_ordinary_text() -> None:
    assert kinds(CORPUS) == []
