"""Finding personal data in text: emails, phone numbers, payment cards, IBANs, US social
security numbers and IP addresses.

Each family is found from what is rare in prose, so that most text is skipped at C speed: an
email from its "@", an IPv6 address from its colons, the kinds written with digits (phones,
cards, SSNs, IPv4) from runs of digits long enough to hold one — found by one cheap pattern,
then tried with one alternation of the kinds' own patterns — and IBANs from two capitals and
two digits. A validator per kind then keeps only the real ones, so that ordinary numbers
(order ids, timestamps, token counts, prices, dates, versions) are left alone:

* a card number has 13-19 digits, an issuer prefix (Visa, Mastercard, Amex, Discover, JCB,
  Diners, UnionPay) and a valid Luhn check digit;
* an IBAN has its country's length and a valid ISO 7064 mod-97 checksum;
* an SSN is written ``AAA-GG-SSSS`` (or with spaces) with an area that is not 000, 666 or 9xx,
  a group that is not 00 and a serial that is not 0000;
* an IP address is what ``ipaddress`` accepts (IPv4 dotted quads, IPv6 in any of its forms);
* a phone number is written as one: ``+`` and a country code, or the North American
  ``(415) 555-2671`` / ``415-555-2671`` / ``415.555.2671`` shapes. A bare run of digits is
  never taken for a phone number: it is far more often an id or a timestamp.

``Detector`` is built once per set of kinds (a policy's ``entities``) and shared; it keeps no
state between calls.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache

# The kinds lockgate finds itself.
BUILT_IN = ("email", "phone", "credit_card", "iban", "ssn", "ip_address")
# Kinds that need Microsoft Presidio (the ``[presidio]`` extra).
PRESIDIO = ("person", "location")

# Patterns that start with a character class, so that the regular expression engine skips
# ahead to where one may start instead of trying every position; what must not come before a
# match (a letter before a card number) is checked on the match (``_clear_before``).
_DIGITS = {  # the kinds written with digits, found by one alternation
    "phone": (r"\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){1,4}"
              r"|\(\d{3}\)[ .-]?\d{3}[ .-]\d{4}|\d{3}([.-])\d{3}\1\d{4}"),
    "credit_card": r"\d(?:[ -]?\d){12,18}",
    "ssn": r"\d{3}([- ])\d{2}\1\d{4}",
    "ip_address": r"\d{1,3}(?:\.\d{1,3}){3}",
}
# Where the digit kinds may be: a run of digits and separators with at least 7 digits' room.
# Found first, by a pattern far cheaper than the kinds' own, which then look only there.
_RUN = re.compile(r"[\d+(][\d ().-]{6,}")
_AFTER_DIGITS = r"(?![\w-]|[.:]\w)"  # not the start of a longer number, word or version
_IBAN = re.compile(r"[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![\w])")
# An email is found from its "@": the local part before it, the domain after it.
_LOCAL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-")
_EMAIL_DOMAIN = re.compile(r"(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,24}\b")
_HEX = frozenset("0123456789abcdefABCDEF")
# An IPv6 address is found from its colons (rare in prose) and checked by ``ipaddress``.
_IPV6 = re.compile(r"(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?:(?<=:)\d{1,3}(?:\.\d{1,3}){3})?(?![\w.:-])")

# ISO 13616 lengths of the countries that issue IBANs.
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18,
    "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24,
    "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24,
    "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}

_LETTERS_AS_NUMBERS = {ord(ch): str(10 + i) for i, ch in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZ")}
_NOT_DIGIT = re.compile(r"\D")

# Issuer prefixes (IIN ranges) of the card networks: a Luhn-valid number without one is
# much more likely an id than a card.
_CARD_PREFIX = re.compile(
    r"4|5[1-5]|2(?:2[2-9]|[3-6]|7[01]|720)|3[47]|6(?:011|5|4[4-9]|2)|35|3(?:0[0-5]|[68])")


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def is_card_number(text: str) -> bool:
    digits = text.replace(" ", "").replace("-", "")
    return (13 <= len(digits) <= 19 and _CARD_PREFIX.match(digits) is not None
            and luhn_valid(digits))


def is_iban(text: str) -> bool:
    compact = text.replace(" ", "").upper()
    if _IBAN_LENGTHS.get(compact[:2]) != len(compact):
        return False
    moved = compact[4:] + compact[:4]
    return int(moved.translate(_LETTERS_AS_NUMBERS)) % 97 == 1  # ISO 7064: A=10 ... Z=35


def is_ssn(text: str) -> bool:
    area, group, serial = text[:3], text[4:6], text[7:]
    return (area not in ("000", "666") and area[0] != "9" and group != "00"
            and serial != "0000")


def is_ip_address(text: str) -> bool:
    """An address that could point at someone: not the unspecified or loopback address (which
    a server binds to, and which ``x :: Int`` or ``::1`` in code would otherwise be)."""
    if "." in text and ":" not in text:  # a dotted quad, checked without ipaddress' overhead
        parts = text.split(".")
        return (len(parts) == 4 and parts[0] not in ("0", "127") and all(
            p.isdigit() and int(p) <= 255 and (p == "0" or p[0] != "0") for p in parts))
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    return not (address.is_unspecified or address.is_loopback)


def is_phone(text: str) -> bool:
    digits = len(_NOT_DIGIT.sub("", text))
    return 10 <= digits <= 15 if text[0] != "+" else 8 <= digits <= 15


_VALID: dict[str, Callable[[str], bool]] = {
    "phone": is_phone, "credit_card": is_card_number, "ssn": is_ssn, "ip_address": is_ip_address,
}


@dataclass(frozen=True, slots=True)
class Found:
    kind: str
    start: int
    end: int
    value: str


class Detector:
    """Finds the given kinds (a subset of ``BUILT_IN``) in text, in order, never overlapping."""

    def __init__(self, kinds: Iterable[str]) -> None:
        wanted = frozenset(kinds)
        self.kinds = tuple(k for k in BUILT_IN if k in wanted)
        self._digits = _digit_regex(tuple(k for k in _DIGITS if k in wanted))
        self._email = "email" in wanted
        self._iban = "iban" in wanted
        self._ipv6 = "ip_address" in wanted

    def find(self, text: str) -> list[Found]:
        found: list[Found] = []
        if self._email and "@" in text:
            found.extend(_emails(text))
        if self._digits is not None:
            for match in _digit_matches(self._digits, text):
                kind = match.lastgroup
                assert kind is not None
                value = match.group()
                if _clear_before(text, match.start()) and _VALID[kind](value):
                    found.append(Found(kind, match.start(), match.end(), value))
        if self._iban:
            found.extend(Found("iban", m.start(), m.end(), m.group())
                         for m in _IBAN.finditer(text)
                         if _clear_before(text, m.start()) and is_iban(m.group()))
        if self._ipv6 and ":" in text:
            found.extend(_ipv6(text))
        return _without_overlaps(found) if len(found) > 1 else found


def _digit_matches(regex: re.Pattern[str], text: str) -> Iterator[re.Match[str]]:
    for run in _RUN.finditer(text):
        digits = run.group().rstrip()
        if len(digits) < 13 and digits.isdigit():
            continue  # a plain number (an id, a timestamp): only a card is written so, 13+ long
        # two characters past the run: what follows a match decides whether it is one
        yield from regex.finditer(text, run.start(), run.end() + 2)


def _clear_before(text: str, start: int) -> bool:
    """Nothing that would make the match part of a longer word, number or version."""
    if start == 0:
        return True
    before = text[start - 1]
    return not (before.isalnum() or before in "_.-+:@/")


def _emails(text: str) -> Iterator[Found]:
    at = text.find("@")
    while at != -1:
        start = _local_part_start(text, at)
        domain = _EMAIL_DOMAIN.match(text, at + 1)
        if start is not None and domain is not None and _clear_before(text, start):
            yield Found("email", start, domain.end(), text[start:domain.end()])
            at = text.find("@", domain.end())
        else:
            at = text.find("@", at + 1)


def _local_part_start(text: str, at: int) -> int | None:
    """Where the address whose "@" is at ``at`` starts (walking back over what a local part
    may hold, at most 64 characters), or None where there is no local part."""
    start = at
    while start > 0 and at - start < 64 and text[start - 1] in _LOCAL_CHARS:
        start -= 1
    while start < at and not text[start].isalnum():  # it starts with a letter or digit
        start += 1
    return start if start < at else None


def _ipv6(text: str) -> Iterator[Found]:
    colon = text.find(":")
    while colon != -1:
        start = colon
        while start > 0 and colon - start < 4 and text[start - 1] in _HEX:
            start -= 1
        match = _IPV6.match(text, start)
        if match is not None and _clear_before(text, start) and is_ip_address(match.group()):
            yield Found("ip_address", start, match.end(), match.group())
            colon = text.find(":", match.end())
        else:
            colon = text.find(":", colon + 1)


def _without_overlaps(found: list[Found]) -> list[Found]:
    found.sort(key=lambda f: (f.start, -f.end))
    kept: list[Found] = []
    for item in found:
        if not kept or item.start >= kept[-1].end:
            kept.append(item)
    return kept


def _renumbered(pattern: str, offset: int) -> str:
    return re.sub(r"\\(\d)", lambda m: f"\\{int(m.group(1)) + offset}", pattern)


@lru_cache(maxsize=64)
def _digit_regex(kinds: tuple[str, ...]) -> re.Pattern[str] | None:
    """One alternation of the digit kinds' patterns, each a named group (back-references
    renumbered so that each pattern keeps its own)."""
    if not kinds:
        return None
    parts = []
    groups = 0
    for kind in kinds:
        offset = groups + 1  # the named group itself
        pattern = _renumbered(_DIGITS[kind], offset)
        parts.append(f"(?P<{kind}>{pattern})")
        groups += 1 + re.compile(_DIGITS[kind]).groups
    # Not inside a number: tried where a run of digits (or a "+" or "(") starts.
    return re.compile(f"(?<!\\d)(?:{'|'.join(parts)}){_AFTER_DIGITS}")
