"""The naming convention: safe names and paths for Dropbox/Windows, version
names, and the convention applied to the shipped plan."""

from __future__ import annotations

import unicodedata

import pytest
from support.basics import meeting, shipped_config

from kcg_mail.core.naming import MAX_NAME, pattern_fields, render_name, safe_name, safe_path, version_path
from kcg_mail.core.plan import archive_folder, protocol_filename

FORBIDDEN = set('<>:"|?*\\/')

HOSTILE = [
    "a/b", "a\\b", "Tema 1: Policy", 'Säg "hej"', "<script>", "a|b?c*d", "fil.\x00docx", "rad\r\nbrytning",
    "slut.", "slut. . ", "  mellanslag  ", "..", ".", "", "   ", "/", "🎉 Fest 🎉.docx", "a" * 500,
    ("Lång " * 80) + ".docx", "a\u0308pple", "CON", "tab\tstop", "\x7fdel",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_safe_name_is_always_valid(name):
    out = safe_name(name)
    assert out, "never empty"
    assert not (FORBIDDEN & set(out)), out
    assert not any(ord(c) < 32 or ord(c) == 127 for c in out)
    assert not out.endswith((".", " ")) and out == out.strip()
    assert out not in (".", "..")
    assert len(out) <= MAX_NAME
    assert unicodedata.is_normalized("NFC", out)
    assert all(ord(c) <= 0xFFFF for c in out)
    assert safe_name(out) == out  # idempotent


def test_separators_become_dashes_and_the_rest_is_dropped():
    assert safe_name("Plan 2023/2024") == "Plan 2023-2024"
    assert safe_name("Tema 1: Policy") == "Tema 1- Policy"
    assert safe_name("a\\b") == "a-b"
    assert safe_name('Säg "hej" <nu>? | * ') == "Säg hej nu"


def test_trailing_dots_and_spaces_are_removed():
    assert safe_name("Protokoll.") == "Protokoll"
    assert safe_name("Protokoll . . ") == "Protokoll"
    assert safe_name("  Protokoll  ") == "Protokoll"


def test_whitespace_is_collapsed():
    assert safe_name("a   b") == "a b"
    assert safe_name("a \u00a0 b") == "a b"


def test_nfc_normalisation():
    decomposed = "Ba\u030astad Go\u0308teborg"  # å and ö as base letter + combining mark
    out = safe_name(decomposed)
    assert out == "Båstad Göteborg"
    assert out == unicodedata.normalize("NFC", decomposed)
    assert len(out) == len("Båstad Göteborg")


def test_emoji_are_dropped():
    out = safe_name("🎉 Fest 🎉.docx")
    assert "🎉" not in out and out.startswith("Fest") and out.endswith(".docx")
    assert safe_name("Möte 😀 i Malmö") == "Möte i Malmö"


def test_length_bound_keeps_the_extension():
    long = "Protokoll " * 40 + ".docx"
    out = safe_name(long)
    assert len(out) <= MAX_NAME
    assert out.endswith(".docx")
    assert out.startswith("Protokoll Protokoll")
    assert not out[:-5].endswith(" ")
    assert len(safe_name("x" * 1000)) == MAX_NAME
    assert len(safe_name("x" * 50, max_len=20)) == 20


def test_length_bound_leaves_room_for_a_version():
    out = safe_name("y" * 400 + ".docx")
    v = version_path("/KCG/" + out, 12).rpartition("/")[2]
    assert len(v) <= 255  # Dropbox's limit


def test_empty_and_dot_names_get_a_name():
    assert safe_name("") == "namnlös"
    assert safe_name("..") == "namnlös"
    assert safe_name(" . ") == "namnlös"
    assert safe_name("***") == "namnlös"


# ------------------------------------------------------------ paths


def test_safe_path_normalises_each_component():
    assert safe_path("KCG/Protokoll/2023") == "/KCG/Protokoll/2023"
    assert safe_path("/KCG//Protokoll/2023/") == "/KCG/Protokoll/2023"
    assert safe_path("\\KCG\\Protokoll") == "/KCG/Protokoll"
    assert safe_path("/KCG/Möte: <jan>./x.docx") == "/KCG/Möte- jan/x.docx"


@pytest.mark.parametrize("path", ["/KCG/../../etc/passwd", "../x", "/KCG/./../x", "/KCG/ .. /x", "..\\..\\x"])
def test_safe_path_cannot_traverse(path):
    out = safe_path(path)
    assert out.startswith("/")
    assert ".." not in out.split("/")
    assert "." not in out.split("/")
    assert all(part == part.strip() for part in out.split("/"))


def test_safe_path_idempotent():
    for p in ["/KCG/Protokoll/2023/2023-02-06 KCG Beslutsprotokoll.docx", "a/b/c", "/x. /y "]:
        assert safe_path(safe_path(p)) == safe_path(p)


# ------------------------------------------------------------ versions


def test_version_path():
    p = "/KCG/Protokoll/2023/2023-02-06 KCG Beslutsprotokoll.docx"
    assert version_path(p, 1) == p
    assert version_path(p, 2) == "/KCG/Protokoll/2023/2023-02-06 KCG Beslutsprotokoll (v2).docx"
    assert version_path(p, 12) == "/KCG/Protokoll/2023/2023-02-06 KCG Beslutsprotokoll (v12).docx"
    # from a version to another, and back to the base name
    v2 = version_path(p, 2)
    assert version_path(v2, 3) == "/KCG/Protokoll/2023/2023-02-06 KCG Beslutsprotokoll (v3).docx"
    assert version_path(v2, 1) == p


def test_version_path_without_extension_and_with_dots():
    assert version_path("/KCG/Logg", 2) == "/KCG/Logg (v2)"
    assert version_path("/KCG/Tema 1.2 del 1.pdf", 2) == "/KCG/Tema 1.2 del 1 (v2).pdf"


# ------------------------------------------------------------ the convention


def test_example_name_from_the_plan():
    cfg = shipped_config()
    feb = meeting("2023-02")
    assert protocol_filename(cfg, feb) == "2023-02-06 KCG Beslutsprotokoll Tema 1 Policy & Branschpraxis – del 1.docx"
    assert archive_folder(cfg, feb) == "/KCG/Protokoll/2023"


def test_every_meeting_has_a_safe_unique_name():
    from kcg_mail.core.plan import resolve_plan

    cfg = shipped_config()
    names = [protocol_filename(cfg, m) for m in resolve_plan(cfg)]
    assert len(set(names)) == len(names)
    for n in names:
        assert n == safe_name(n) and n.endswith(".docx")
    jan24 = next(m for m in resolve_plan(cfg) if m.id == "2024-01")
    assert archive_folder(cfg, jan24) == "/KCG/Protokoll/2024"
    assert protocol_filename(cfg, jan24).startswith("2024-01-02 KCG Beslutsprotokoll Fysiskt möte 2024")


def test_render_name_makes_values_safe():
    assert render_name("{date} {theme}", {"date": "2023-02-06", "theme": "A/B: C?"}) == "2023-02-06 A-B- C"
    assert pattern_fields("{date} {short} {doc} {theme_label}") == {"date", "short", "doc", "theme_label"}
    assert pattern_fields("fast text") == set()
