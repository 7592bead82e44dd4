"""Configuration: the network, the year plans, meeting rules and transports.

Everything the coordinator edits lives in ``config/`` as YAML:

- ``network.yaml``   people (members, coordinator, guests), the network mailbox
- ``plan-YYYY.yaml`` the year plan: one entry per meeting
- ``meetings.yaml``  standing agenda, times, places, lead times, naming, calendar rules
- ``transport.yaml`` which mail system and archive to use (no secrets)

Any transport setting can be overridden from the environment as
``KCG_MAIL__<FIELD>`` / ``KCG_ARCHIVE__<FIELD>`` (e.g. ``KCG_MAIL__KIND=smtp_imap``).
Secrets are never read from these files; see ``kcg_mail.secrets``.

Validation errors name the file, the field and the fix.
"""

from __future__ import annotations

import os
import re
import datetime as dt
from datetime import date, time
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from kcg_mail.naming import pattern_fields

DEFAULT_CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"
EMAIL_RE = re.compile(r"^[^@\s<>\"',;]+@[^@\s<>\"',;]+\.[A-Za-z]{2,}$")
MeetingKind = Literal["physical", "digital", "all_members", "study_trip"]
SECRET_FIELDS = {"password", "client_secret", "app_secret", "refresh_token", "secret", "token"}


class ConfigError(Exception):
    """A configuration problem; ``str()`` names file, field and fix, one per line."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------- network


class Person(_Model):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    name: str
    organisation: str = ""
    city: str = ""
    email: str
    role: Literal["member", "coordinator", "guest"] = "member"
    active: bool = True

    @field_validator("email")
    @classmethod
    def _email(cls, v: str) -> str:
        v = v.strip()
        if not EMAIL_RE.match(v):
            raise ValueError(f"{v!r} is not an email address like name@example.se")
        return v.lower()

    @field_validator("name", "organisation", "city")
    @classmethod
    def _one_line(cls, v: str) -> str:
        if any(c in v for c in "\r\n\x00"):
            raise ValueError("must be on one line")
        return v.strip()


class Mailbox(_Model):
    name: str
    email: str

    _email = field_validator("email")(Person._email.__func__)  # type: ignore[attr-defined]
    _one = field_validator("name")(Person._one_line.__func__)  # type: ignore[attr-defined]


class Network(_Model):
    name: str = "Key Cities Group"
    short: str = Field("KCG", pattern=r"^[A-Z][A-Z0-9]{1,9}$")
    purpose: str = ""
    mailbox: Mailbox
    members: list[Person]
    guests: list[Person] = []
    #: extra addresses allowed to file minutes for any meeting
    filers: list[str] = []
    open_seats: int = 0
    values: list[str] = []
    rules: list[str] = []
    manual_onboarding_steps: list[str] = []

    @model_validator(mode="after")
    def _checks(self) -> "Network":
        ids = [p.id for p in self.members + self.guests]
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            raise ValueError(f"person id(s) used twice: {', '.join(sorted(dup))}; give each person a unique id")
        coords = [p for p in self.members if p.role == "coordinator"]
        if len(coords) != 1:
            raise ValueError("exactly one member must have role: coordinator (Svenska Stadskärnor)")
        return self

    @property
    def coordinator(self) -> Person:
        return next(p for p in self.members if p.role == "coordinator")

    def person(self, pid: str) -> Person:
        for p in self.members + self.guests:
            if p.id == pid:
                return p
        raise KeyError(pid)

    @property
    def active_members(self) -> list[Person]:
        return [p for p in self.members if p.active]


# ------------------------------------------------------------------------ plan


class PlannedMeeting(_Model):
    month: str = Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="YYYY-MM")
    id: str | None = None
    kind: MeetingKind
    theme_no: int | None = None
    theme: str
    host: str
    backup_host: str | None = None
    comment: str = ""
    guests: list[str] = []
    date: dt.date | None = None
    start: dt.time | None = None
    end: dt.time | None = None
    tentative: bool = False
    proposed: str | None = None
    place: str | None = None
    link: str | None = None
    cancelled: bool = False

    @property
    def meeting_id(self) -> str:
        return self.id or self.month


class Plan(_Model):
    year: int
    note: str = ""
    meetings: list[PlannedMeeting]
    months_without_meeting: list[str] = []


# ------------------------------------------------------------- meeting rules


class Times(_Model):
    start: time
    end: time


class LeadTimes(_Model):
    """Days relative to the meeting date (negative = before)."""

    brief_host: int = 21
    invite: int = 14
    remind_host: int = 3
    send_template: int = 1
    chase_host: int = 3
    escalate: int = 7


class Meetings(_Model):
    timezone: str = "Europe/Stockholm"
    holiday_policy: Literal["next_working_day", "previous_working_day", "keep"] = "next_working_day"
    extra_non_working_days: list[date] = []
    agenda: list[str]
    times: dict[str, Times]
    places: dict[str, str] = {}
    link: str = ""
    lead_days: LeadTimes = LeadTimes()
    kind_labels: dict[str, str] = {}
    naming: dict[str, str]
    distribution: Literal["attach", "link"] = "attach"
    decision_rows: int = 6

    @model_validator(mode="after")
    def _naming(self) -> "Meetings":
        known = {"date", "short", "doc", "theme_no", "theme", "theme_label", "host", "city", "year", "month", "kind"}
        for key in ("file", "folder"):
            if key not in self.naming:
                raise ValueError(f"naming.{key} is missing; add e.g. file: '{{date}} {{short}} {{doc}} {{theme_label}}'")
            bad = pattern_fields(self.naming[key]) - known
            if bad:
                raise ValueError(f"naming.{key} uses unknown field(s) {sorted(bad)}; use only {sorted(known)}")
        for kind in ("physical", "digital", "all_members", "study_trip"):
            if kind not in self.times:
                raise ValueError(f"times.{kind} is missing; add start/end times like '09:00'")
        return self


# ------------------------------------------------------------------ transport


class MailSettings(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    kind: Literal["maildir", "smtp_imap", "exchange", "graph"] = "maildir"


class ArchiveSettings(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    kind: Literal["local", "dropbox"] = "local"
    root: str = "/KCG"


class Transport(_Model):
    mail: MailSettings = MailSettings()
    archive: ArchiveSettings = ArchiveSettings()
    alerts_to: list[str] = []
    prefect_ui_url: str = "http://127.0.0.1:4200"


# ---------------------------------------------------------------------- all


class Config(_Model):
    directory: str
    network: Network
    plans: list[Plan]
    meetings: Meetings
    transport: Transport

    def all_meetings(self) -> list[PlannedMeeting]:
        return [m for p in self.plans for m in p.meetings]


FIXES = {
    "missing": "add the field",
    "extra_forbidden": "remove it or check the spelling against the documented fields",
    "string_pattern_mismatch": "use the documented format",
    "time_parsing": "write the time as HH:MM, e.g. '09:00'",
    "time_type": "write the time as HH:MM in quotes, e.g. '09:00'",
    "date_from_datetime_parsing": "write the date as YYYY-MM-DD",
    "date_parsing": "write the date as YYYY-MM-DD",
    "literal_error": "use one of the allowed values",
    "int_parsing": "write a whole number",
}


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _validate(model: type[BaseModel], data: Any, file: Path, problems: list[str]) -> Any:
    if data is None:  # unreadable file: _read_yaml already reported it
        return None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            msg = err["msg"].removeprefix("Value error, ")
            fix = FIXES.get(err["type"], "")
            problems.append(f"{file}: {_loc(err['loc'])}: {msg}" + (f" (fix: {fix})" if fix and fix not in msg else ""))
        return None


def _read_yaml(file: Path, problems: list[str]) -> Any:
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        problems.append(f"{file}: file is missing (fix: copy it from the defaults in the kcg-mail repository's config/)")
        return None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problems.append(f"{file}:{where}: not valid YAML: {getattr(exc, 'problem', exc)} (fix: check indentation and quotes)")
        return None
    if not isinstance(data, dict):
        problems.append(f"{file}: expected a mapping of fields at the top level")
        return None
    return data


def _env_overrides(section: str, data: dict[str, Any], environ: dict[str, str]) -> dict[str, Any]:
    prefix = f"KCG_{section.upper()}__"
    out = dict(data)
    for key, value in environ.items():
        if key.startswith(prefix):
            out[key[len(prefix):].lower()] = value
    return out


#: (transport kind, field) -> the secret name kcg_mail.bootstrap reads
SECRET_NAMES = {
    ("smtp_imap", "password"): "smtp_password", ("exchange", "password"): "ews_password",
    ("exchange", "client_secret"): "ews_client_secret", ("graph", "client_secret"): "graph_client_secret",
    ("dropbox", "app_secret"): "dropbox_app_secret", ("dropbox", "refresh_token"): "dropbox_refresh_token",
}


def _no_secrets(section: str, data: dict[str, Any], file: Path, problems: list[str]) -> None:
    kind = str(data.get("kind", ""))
    for key in data:
        if key.lower() in SECRET_FIELDS:
            name = SECRET_NAMES.get((kind, key.lower()), f"{kind}_{key}".strip("_"))
            problems.append(
                f"{file}: {section}.{key}: secrets must not be stored in config files (fix: remove it and set the "
                f"environment variable KCG_{name.upper()} or the Prefect Secret block "
                f"'kcg-{name.lower().replace('_', '-')}'; see README)"
            )


def load_config(directory: Path | str | None = None, environ: dict[str, str] | None = None) -> Config:
    """Load and validate every file; raise ConfigError listing all problems."""
    environ = dict(os.environ if environ is None else environ)
    directory = Path(directory or environ.get("KCG_CONFIG_DIR") or DEFAULT_CONFIG_DIR)
    problems: list[str] = []
    if not directory.is_dir():
        raise ConfigError([f"{directory}: config directory not found (fix: pass --config DIR or set KCG_CONFIG_DIR)"])

    net_file = directory / "network.yaml"
    network = _validate(Network, _read_yaml(net_file, problems), net_file, problems)

    plan_files = sorted(directory.glob("plan-*.yaml"))
    if not plan_files:
        problems.append(f"{directory}: no plan-YYYY.yaml found (fix: add the year plan, e.g. plan-2023.yaml)")
    plans: list[tuple[Path, Plan]] = []
    for pf in plan_files:
        p = _validate(Plan, _read_yaml(pf, problems), pf, problems)
        if p is not None:
            plans.append((pf, p))

    mt_file = directory / "meetings.yaml"
    meetings = _validate(Meetings, _read_yaml(mt_file, problems), mt_file, problems)

    tr_file = directory / "transport.yaml"
    tr_data = _read_yaml(tr_file, problems) if tr_file.exists() else {}
    transport = None
    if tr_data is not None:
        for section in ("mail", "archive"):
            sect = tr_data.get(section) or {}
            _no_secrets(section, sect, tr_file, problems)
            tr_data[section] = _env_overrides(section, sect, environ)
        transport = _validate(Transport, tr_data, tr_file, problems)

    # cross-references: hosts, guests, unique ids and months
    if network is not None:
        ids = {p.id for p in network.members}
        guest_ids = {p.id for p in network.guests}
        seen: dict[str, Path] = {}
        for pf, plan in plans:
            for i, m in enumerate(plan.meetings):
                where = f"{pf}: meetings[{i}] ({m.month})"
                for field in ("host", "backup_host"):
                    pid = getattr(m, field)
                    if pid is not None and pid not in ids:
                        problems.append(
                            f"{where}.{field}: '{pid}' is not a member id in {net_file} "
                            f"(fix: use one of {', '.join(sorted(ids))}, or add the person to network.yaml)"
                        )
                for g in m.guests:
                    if g not in guest_ids:
                        problems.append(
                            f"{where}.guests: '{g}' is not a guest id in {net_file} "
                            f"(fix: add it under guests: with name and email, or use one of {', '.join(sorted(guest_ids)) or '(none yet)'})"
                        )
                if m.meeting_id in seen:
                    problems.append(f"{where}.id: meeting id '{m.meeting_id}' already used in {seen[m.meeting_id]} (fix: set a unique id:)")
                seen[m.meeting_id] = pf
                if m.date and m.date.strftime("%Y-%m") != m.month and not m.tentative:
                    problems.append(f"{where}.date: {m.date} is not in month {m.month} (fix: correct the date or the month)")
    if problems:
        raise ConfigError(problems)
    return Config(directory=str(directory), network=network, plans=[p for _, p in plans], meetings=meetings, transport=transport)
