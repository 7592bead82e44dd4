"""What a protocol template receives: the context schema, a complete sample
context and its sparse and rich variants (for trial renders). See ``render``
for the keys."""

from __future__ import annotations

import copy
from typing import Any

_PERSON = {"name": str, "organisation": str, "city": str, "email": str}


#: The documented context, as a schema: dict = mapping with these keys, [x] = list of x,
#: a type = leaf value. ``check_template`` validates every placeholder against it.
CONTEXT_SCHEMA: dict[str, Any] = {
    "network": {"name": str, "short": str},
    "meeting": {
        "id": str,
        "token": str,
        "date": str,
        "date_text": str,
        "start_time": str,
        "end_time": str,
        "place": str,
        "link": str,
        "kind": str,
        "kind_label": str,
        "theme_no": int,
        "theme": str,
        "host": _PERSON,
        "backup_host": _PERSON,
        "comment": str,
        "guests": [str],
    },
    "members": [dict(_PERSON, attendance=str)],
    "agenda": [str],
    "next_meeting": {"date_text": str, "host_name": str, "theme": str},
    "rules": [str],
    "values": [str],
    "decision_rows": int,
    # the report-back point: open decisions of earlier meetings, project groups' status
    "followup": {
        "point": int,
        "decisions": [{"ref": str, "decision": str, "owner": str, "due": str, "meeting": str}],
        "projects": [{"name": str, "lead": str, "status": str, "when": str}],
    },
    # the January meeting adopts next year's plan (None for every other meeting)
    "plan": {
        "year": int,
        "focus": [{"area": str, "topic": str, "votes": str}],
        "rows": [{"month": str, "date": str, "theme": str, "host": str, "backup_host": str, "kind": str}],
        "tasks": [{"what": str, "who": str, "when": str}],
    },
}


def _member(name: str, organisation: str, city: str, email: str, attendance: str = "") -> dict[str, str]:
    return {
        "name": name,
        "organisation": organisation,
        "city": city,
        "email": email,
        "attendance": attendance,
    }


#: A complete example context (February 2023, theme 1, host Daniel Swärd, Gävle City).
SAMPLE_CONTEXT: dict[str, Any] = {
    "network": {"name": "Key Cities Group", "short": "KCG"},
    "meeting": {
        "id": "2023-02",
        "token": "k7q2m9x4",
        "date": "2023-02-06",
        "date_text": "måndag 6 februari 2023",
        "start_time": "09:00",
        "end_time": "10:30",
        "place": "",
        "link": "https://teams.microsoft.com/l/meetup-join/exempel",
        "kind": "monthly",
        "kind_label": "Månadsmöte",
        "theme_no": 1,
        "theme": "Policy & Branschpraxis – del 1",
        "host": {
            "name": "Daniel Swärd",
            "organisation": "Gävle City",
            "city": "Gävle",
            "email": "daniel@gavlecity.example",
        },
        "backup_host": {
            "name": "David Nilsson",
            "organisation": "NKPG City",
            "city": "Norrköping",
            "email": "david@nkpgcity.example",
        },
        "comment": "",
        "guests": [],
    },
    "members": [
        _member("Aljoša Lagumdžija", "Södertälje City", "Södertälje", "aljosa@sodertaljecity.example"),
        _member("Armina Ilijasevic", "City Örebro", "Örebro", "armina@cityorebro.example", "Ja"),
        _member("Björn Bergman", "Svenska Stadskärnor", "Stockholm", "bjorn@svenskastadskarnor.example"),
        _member("Daniel Swärd", "Gävle City", "Gävle", "daniel@gavlecity.example", "Ja"),
        _member("David Nilsson", "NKPG City", "Norrköping", "david@nkpgcity.example", "Nej"),
        _member("Hanna Candell", "Helsingborg City", "Helsingborg", "hanna@helsingborgcity.example"),
        _member("Isabel Gölles", "Lund Citysamverkan", "Lund", "isabel@lundcity.example"),
        _member("Jessica Stille Törnqvist", "Linköpings Innersta", "Linköping", "jessica@innersta.example"),
        _member("Lena Dalerup", "Innerstaden Göteborg", "Göteborg", "lena@innerstaden.example"),
        _member("Lisa Thörn", "Uppsala City", "Uppsala", "lisa@uppsalacity.example"),
        _member("Linda Sjöstrand", "Borås City", "Borås", "linda@borascity.example"),
        _member("Maria Martinsson", "Västerås City", "Västerås", "maria@vasterascity.example"),
        _member("Monica Bruvik", "City i Samverkan Stockholm", "Stockholm", "monica@cityisamverkan.example"),
        _member("Pia Sandin", "Malmö Citysamverkan", "Malmö", "pia@malmocity.example"),
    ],
    "agenda": [
        "Välkomna – från månadens värd",
        "Inledning månadens tema: inledning/inspiration av värden",
        "Runda månadens tema: runda med kunskapsdelning & erfarenhetsutbyte",
        "Återrapportering av ev. projekt",
        "Info från Svenska Stadskärnor",
        "Nästa möte: värd & tema",
        "Övriga frågor",
    ],
    "next_meeting": {
        "date_text": "måndag 6 mars 2023",
        "host_name": "David Nilsson",
        "theme": "Tema 2: Affärsplanering",
    },
    "rules": [
        "Allas åsikter är lika viktiga",
        "Alla funderingar skall upp på bordet",
        "Alla är ansvariga för resultatet",
    ],
    "values": [
        "Samarbete och handlingskraft för resultat",
        "Öppenhet och kreativitet för lärande och utveckling",
        "Ansvarstagande och delaktighet för kvalitet och effektivitet",
        "Respekt och omtanke för de människor vi möter",
        "Lustfyllt och roligt för att ge energi",
    ],
    "decision_rows": 6,
    "followup": {
        "point": 4,
        "decisions": [
            {"ref": "2023-01/1", "decision": "Ta fram ett gemensamt underlag om trygghet", "owner": "Maria Martinsson",
             "due": "2023-02-28", "meeting": "2023-01"},
            {"ref": "2023-01/2", "decision": "Dela goda exempel i Dropbox-mappen", "owner": "Alla",
             "due": "2023-03-06", "meeting": "2023-01"},
        ],
        "projects": [{"name": "Trygghet i stadskärnan", "lead": "Lisa Thörn",
                      "status": "Enkäten är ute till alla städer; sammanställning i mars.", "when": "2023-01-27"}],
    },
    "plan": {
        "year": 2024,
        "focus": [{"area": "Omvärldsbevakning", "topic": "Studieresa", "votes": "22"}],
        "rows": [{"month": "Februari 2024", "date": "måndag 5 februari 2024", "theme": "Tema 1: Trygghet",
                  "host": "Maria Martinsson", "backup_host": "Monica Bruvik", "kind": "Månadsmöte (digitalt)"}],
        "tasks": [{"what": "Beslutsprotokoll efter varje möte", "who": "Mötets värd", "when": "två arbetsdagar efter"}],
    },
}


def sparse_context() -> dict[str, Any]:
    """SAMPLE_CONTEXT with every optional value at its emptiest (``None``, ``""``, ``[]``),
    so a trial render also walks the other branch of each ``{% if %}``."""
    ctx = copy.deepcopy(SAMPLE_CONTEXT)
    m = ctx["meeting"]
    m.update(place="", link="", theme_no=None, backup_host=None, comment="", guests=[])
    ctx["next_meeting"] = None
    ctx["members"] = [dict(x, attendance="") for x in ctx["members"]]
    ctx["decision_rows"] = 0
    ctx["followup"] = {"point": 0, "decisions": [], "projects": []}
    ctx["plan"] = None
    return ctx


def rich_context() -> dict[str, Any]:
    ctx = copy.deepcopy(SAMPLE_CONTEXT)
    m = ctx["meeting"]
    m.update(place="Stadshuset, Gävle", comment="Rad ett\nRad två", guests=["Gäst Gästsson"])
    ctx["followup"]["projects"].append({"name": "A & B <c>", "lead": "Pia Sandin", "status": "", "when": ""})
    return ctx
