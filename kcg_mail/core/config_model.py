"""Configuration model: the network, the year plans, meeting rules and transports.

Pure: pydantic models and their validation. Reading the files is
``kcg_mail.config_loader.load_config`` (the shell).

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

import datetime as dt
import re
from collections import Counter
from datetime import date, time
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from kcg_mail.core.naming import pattern_fields
from kcg_mail.core.projects_model import Projects

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


def _email(v: str) -> str:
    v = v.strip()
    if not EMAIL_RE.match(v):
        raise ValueError(f"{v!r} is not an email address (fix: write it like name@example.se)")
    return v.lower()


def _one_line(v: str) -> str:
    if any(c in v for c in "\r\n\x00"):
        raise ValueError("must be on one line (fix: remove the line breaks)")
    return v.strip()


#: an email address, kept in lower case
Email = Annotated[str, AfterValidator(_email)]
#: a name or title written on one line (it goes into mail headers and file names)
OneLine = Annotated[str, AfterValidator(_one_line)]


# --------------------------------------------------------------------- network


class Person(_Model):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    name: OneLine
    organisation: OneLine = ""
    city: OneLine = ""
    email: Email
    role: Literal["member", "coordinator", "guest"] = "member"
    active: bool = True
    #: the language of the mail a guest gets (``en``: English texts); members read Swedish
    language: Literal["sv", "en"] = "sv"


class Mailbox(_Model):
    name: OneLine
    email: Email


class Network(_Model):
    name: str = "Key Cities Group"
    short: str = Field("KCG", pattern=r"^[A-Z][A-Z0-9]{1,9}$")
    purpose: str = ""
    mailbox: Mailbox
    members: list[Person]
    guests: list[Person] = []
    #: wider audiences for the open meeting ("Möte för alla"): list name -> organisations;
    #: each gets an invitation of its own, as a guest does (``meetings.yaml`` kinds.<kind>.audience)
    audiences: dict[str, list[Person]] = {}
    #: extra addresses allowed to file minutes for any meeting
    filers: list[str] = []
    open_seats: int = 0
    values: list[str] = []
    rules: list[str] = []
    manual_onboarding_steps: list[str] = []

    @model_validator(mode="after")
    def _checks(self) -> Network:
        ids = [p.id for p in self.members + self.guests + self.audience_people]
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            raise ValueError(f"person id(s) used twice: {', '.join(sorted(dup))}; give each person a unique id")
        coords = [p for p in self.members if p.role == "coordinator"]
        if len(coords) != 1:
            raise ValueError("exactly one member must have role: coordinator (Svenska Stadskärnor)")
        english = [p.id for p in self.members if p.language != "sv"]
        if english:
            raise ValueError(f"members {', '.join(english)}: language is only for guests (members get Swedish mail); "
                             "remove language: from the member, or move the person to guests:")
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
    def audience_people(self) -> list[Person]:
        """Everyone on an audience list (each once, by address)."""
        seen: dict[str, Person] = {}
        for people in self.audiences.values():
            for p in people:
                seen.setdefault(p.email, p)
        return list(seen.values())

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
    """Swedish working days before (brief, invite, template) or after (protocol
    due, chase, escalate) the meeting date; weekends, public holidays and
    ``extra_non_working_days`` do not count.

    ``send_template``: the host's reminder and the Word template go out in one
    mail this many working days before. ``protocol_due``: the day the host is
    asked to send the minutes back by (the brief and the template mail name it);
    the chase comes only after it. ``spacing``: a chase goes out at least this
    many working days after the template actually went out, an escalation at
    least this many after the chase. ``late_template``: a meeting held at most
    this many working days before the go-live date still gets its template (and
    the chase after it).
    """

    brief_host: int = Field(15, ge=0)
    invite: int = Field(10, ge=0)
    send_template: int = Field(2, ge=0)
    protocol_due: int = Field(2, ge=0)
    chase_host: int = Field(3, ge=1)
    escalate: int = Field(5, ge=1)
    spacing: int = Field(2, ge=1)
    late_template: int = Field(3, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _no_separate_reminder(cls, data: Any) -> Any:
        if isinstance(data, dict) and "remind_host" in data:
            raise ValueError("remind_host is no longer a step of its own: the host's reminder goes out with the "
                             "template (send_template); remove remind_host")
        return data

    @model_validator(mode="after")
    def _order(self) -> LeadTimes:
        if self.send_template > self.brief_host:
            raise ValueError(f"send_template ({self.send_template}) comes before brief_host ({self.brief_host}); "
                             "the brief must go out first: make brief_host larger")
        if self.protocol_due >= self.chase_host:
            raise ValueError(f"protocol_due ({self.protocol_due}) must be before chase_host ({self.chase_host}): "
                             "a host is chased only after the day the minutes were due; make protocol_due smaller")
        return self


class MemberCaps(_Model):
    """At most ``per_day`` mails a day and ``per_week`` a calendar week (Monday to
    Sunday) reach a member; what would break it waits (``kcg_mail.core.pacing``)."""

    per_day: int = Field(1, ge=1)
    per_week: int = Field(4, ge=1)

    @model_validator(mode="after")
    def _week_holds_a_day(self) -> MemberCaps:
        if self.per_week < self.per_day:
            raise ValueError(f"member_caps.per_week ({self.per_week}) is below per_day ({self.per_day}); "
                             f"set per_week to at least {self.per_day}")
        return self


class KindRules(_Model):
    """What a kind of meeting decides (``meetings.yaml`` ``kinds:``).

    ``date_by: coordinator``: no automatic date. The coordinator is asked (a mail he
    answers by reply, and the Prefect form kcg-set-meeting) for date, times and place
    from ``ask_weeks`` weeks before the meeting's month, reminded every
    ``remind_days`` days until it is set. ``needs_place``: the full invitation waits
    for a place (a save-the-date goes out as soon as the date is set).
    ``lead_days``: this kind's own lead times (over ``lead_days`` of the file).
    ``audience``: lists of ``network.yaml`` ``audiences:`` invited as guests are
    (their own invitation). A kind's programme is ``programmes:`` of meetings.yaml."""

    date_by: Literal["rule", "coordinator"] = "rule"
    ask_weeks: int = Field(10, ge=1, le=52)
    remind_days: int = Field(7, ge=1)
    needs_place: bool = False
    lead_days: dict[str, int] = {}
    audience: list[str] = []

    @field_validator("lead_days")
    @classmethod
    def _known_steps(cls, v: dict[str, int]) -> dict[str, int]:
        bad = sorted(set(v) - set(LeadTimes.model_fields))
        if bad:
            raise ValueError(f"unknown lead time(s) {bad}; use only {sorted(LeadTimes.model_fields)}")
        if any(n < 0 for n in v.values()):
            raise ValueError("lead times are working days, 0 or more")
        return v


class Meetings(_Model):
    timezone: str = "Europe/Stockholm"
    holiday_policy: Literal["next_working_day", "previous_working_day", "keep"] = "next_working_day"
    extra_non_working_days: list[date] = []
    agenda: list[str]
    times: dict[str, Times]
    places: dict[str, str] = {}
    link: str = ""
    lead_days: LeadTimes = LeadTimes()
    #: the hour the daily run sends (local time of ``timezone``)
    send_at: time = time(7, 0)
    #: meetings held before this day are history (nothing is sent for them);
    #: unset: the day of the first run, kept in the state record
    go_live: date | None = None
    kind_labels: dict[str, str] = {}
    naming: dict[str, str]
    distribution: Literal["attach", "link"] = "attach"
    decision_rows: int = 6
    #: the programme of a meeting, per kind (shown in its invitation and the host's brief)
    programmes: dict[str, list[str]] = {}
    #: how many mails may reach a member a day and a week (``kcg_mail.core.pacing``)
    member_caps: MemberCaps = MemberCaps()
    #: per kind: who decides the date, lead times, programme, audience
    kinds: dict[str, KindRules] = {}
    #: a tentative date is asked about this many weeks before it (confirm or move)
    confirm_weeks: list[int] = [10, 6, 3]
    #: days after the last question unanswered before the alert channel says so
    date_alert_days: int = Field(7, ge=1)

    def kind(self, kind: str) -> KindRules:
        return self.kinds.get(kind) or KindRules()

    def lead_for(self, kind: str) -> LeadTimes:
        """The lead times of a kind: the file's ``lead_days`` with the kind's own over them."""
        own = self.kind(kind).lead_days
        return self.lead_days.model_copy(update=own) if own else self.lead_days

    @model_validator(mode="after")
    def _naming(self) -> Meetings:
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
        unknown = sorted(set(self.kinds) - {"physical", "digital", "all_members", "study_trip"})
        if unknown:
            raise ValueError(f"kinds: unknown kind(s) {unknown}; use physical, digital, all_members or study_trip")
        if sorted(self.confirm_weeks, reverse=True) != self.confirm_weeks or any(w < 1 for w in self.confirm_weeks):
            raise ValueError("confirm_weeks: weeks before the date, largest first, e.g. [10, 6, 3]")
        return self


# ------------------------------------------------------------------ transport


class _Section(BaseModel):
    """A transport.yaml section for one ``kind``: only its documented fields
    (a misspelt one is an error); a blank value ("" from an empty environment
    variable) counts as not set."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _blank_is_unset(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None and v != ""}
        return data


def _needed(field: str, why: str) -> PydanticCustomError:
    """A field this kind (or auth) needs; the shell names file, field and fix."""
    return PydanticCustomError("missing_for_kind", "{field}: missing, needed for {why}", {"field": field, "why": why})


SmtpSecurity = Literal["starttls", "tls", "none"]
ImapSecurity = Literal["tls", "starttls", "none"]

_SECURITY_FIX = (
    "'starttls' for a submission port like 587 (or IMAP 143), 'tls' for an implicit-TLS port like 465 "
    "(or IMAP 993), 'none' only for a server on this machine (loopback), which sends the password unencrypted"
)


class MaildirSettings(_Section):
    """Local Maildir (the embedded default): ``path`` defaults to ``<workdir>/mail``."""

    kind: Literal["maildir"] = "maildir"
    path: str | None = None


class SmtpImapSettings(_Section):
    """Any mail host: SMTP submission and IMAP. The password comes from
    ``KCG_SMTP_PASSWORD`` (never from the file)."""

    kind: Literal["smtp_imap"]
    smtp_host: str
    smtp_port: int = 587
    smtp_security: SmtpSecurity = "starttls"
    #: default: smtp_host
    imap_host: str | None = None
    imap_port: int = 993
    imap_security: ImapSecurity = "tls"
    #: default: the network mailbox's address
    username: str | None = None
    sent_folder: str = "Sent"
    timeout: float = 30.0
    processed_folder: str = "processed"
    quarantine_folder: str = "quarantine"

    @field_validator("smtp_security", "imap_security", mode="before")
    @classmethod
    def _security(cls, v: Any, info: ValidationInfo) -> Any:
        value = str(v).strip().lower()
        allowed = ("starttls", "tls", "none")
        if value not in allowed:
            raise PydanticCustomError(
                "security_setting",
                "{value} is not a security setting (fix: use one of {allowed}: {fix})",
                {"value": repr(str(v)), "allowed": ", ".join(
                    ("starttls", "tls", "none") if info.field_name == "smtp_security" else ("tls", "starttls", "none")),
                 "fix": _SECURITY_FIX},
            )
        return value


class ExchangeSettings(_Section):
    """Exchange Web Services (exchangelib). ``auth: oauth`` needs client_id and
    tenant_id (secret ``KCG_EWS_CLIENT_SECRET``); ``ntlm``/``basic`` need
    username (password ``KCG_EWS_PASSWORD``)."""

    kind: Literal["exchange"]
    auth: Literal["oauth", "ntlm", "basic"] = "oauth"
    service_endpoint: str
    version: str | None = None
    autodiscover: bool = False
    #: default: the network mailbox's address
    mailbox: str | None = None
    client_id: str | None = None
    tenant_id: str | None = None
    username: str | None = None
    #: seconds of throttling waited out per operation before giving up for this run
    max_wait: float = 300.0

    @model_validator(mode="after")
    def _auth_fields(self) -> ExchangeSettings:
        needed = ("client_id", "tenant_id") if self.auth == "oauth" else ("username",)
        for field in needed:
            if not getattr(self, field):
                raise _needed(field, f"mail kind 'exchange' with auth '{self.auth}'")
        return self


class GraphSettings(_Section):
    """Microsoft 365 through Microsoft Graph; secret ``KCG_GRAPH_CLIENT_SECRET``."""

    kind: Literal["graph"]
    tenant_id: str
    client_id: str
    #: default: the network mailbox's address
    mailbox: str | None = None


#: ``transport.yaml`` ``mail:``, told apart by ``kind``.
MailSettings = Annotated[
    MaildirSettings | SmtpImapSettings | ExchangeSettings | GraphSettings, Field(discriminator="kind")
]


class _ArchiveSection(_Section):
    """``root``: the folder every archive path lies under (a Dropbox folder,
    or a folder inside the local archive); ``meetings.yaml`` naming.folder
    (default ``/KCG/Protokoll/{year}``) comes below it. Default ``/``."""

    root: str = "/"

    @field_validator("root")
    @classmethod
    def _root(cls, v: str) -> str:
        v = (v or "/").strip()
        if not v.startswith("/") or any(part in ("..", ".") for part in v.split("/")):
            raise ValueError(f"{v!r} is not an absolute folder like / or /Team/Nätverk (fix: start it with / "
                             f"and leave out '..')")
        return "/" + v.strip("/") if v.strip("/") else "/"


class LocalArchiveSettings(_ArchiveSection):
    """A local folder (default ``<workdir>/dropbox``)."""

    kind: Literal["local"] = "local"
    path: str | None = None


class DropboxSettings(_ArchiveSection):
    """Dropbox (the official SDK); secrets ``KCG_DROPBOX_APP_SECRET`` and
    ``KCG_DROPBOX_REFRESH_TOKEN``."""

    kind: Literal["dropbox"]
    app_key: str
    team_root_namespace_id: str | None = None
    team_member_id: str | None = None


#: ``transport.yaml`` ``archive:``, told apart by ``kind``.
ArchiveSettings = Annotated[LocalArchiveSettings | DropboxSettings, Field(discriminator="kind")]


class Inbound(_Model):
    """Who may make the system act (see SECURITY.md)."""

    #: authserv-ids of our own receiving server whose Authentication-Results are
    #: trusted (``kcg check --connect`` lists those seen on recent mail)
    trusted_authserv_ids: list[str] = []
    #: of those, receivers whose ``dmarc=pass`` counts although it names no
    #: ``header.from`` (a receiver documented to write it so; see SECURITY.md).
    #: Empty: ``dmarc=pass`` counts only with ``header.from`` = the From domain.
    dmarc_pass_without_header_from: list[str] = []
    #: a valid reply key (a reply to our mail) is required to file minutes
    require_reply_key: bool = False
    #: put ``kcg+<key>@domain`` in Reply-To (off for mail systems without plus-addressing)
    plus_address_reply_to: bool = True

    @field_validator("trusted_authserv_ids", "dmarc_pass_without_header_from", mode="before")
    @classmethod
    def _comma_list(cls, v: Any) -> Any:
        if isinstance(v, str):  # KCG_INBOUND__TRUSTED_AUTHSERV_IDS=mx1.example.se,mx2.example.se
            return [p.strip() for p in v.split(",") if p.strip()]
        return v

    @field_validator("trusted_authserv_ids", "dmarc_pass_without_header_from")
    @classmethod
    def _ids(cls, v: list[str]) -> list[str]:
        for i in v:
            if not re.fullmatch(r"[A-Za-z0-9._-]+", i):
                raise ValueError(f"{i!r} is not an authserv-id (a host name such as mx.example.se, or exchange-online)")
        return [i.lower() for i in v]

    @model_validator(mode="after")
    def _bare_dmarc_is_trusted(self) -> Inbound:
        stray = [i for i in self.dmarc_pass_without_header_from if i not in self.trusted_authserv_ids]
        if stray:
            raise ValueError(
                f"dmarc_pass_without_header_from names {', '.join(stray)}, which is not in trusted_authserv_ids "
                f"(fix: list only ids of trusted_authserv_ids there, or add the id to trusted_authserv_ids too)")
        return self


class Distribution(_Model):
    #: distributions of a meeting's minutes per day; a further version waits for approval
    max_per_meeting_per_day: int = Field(2, ge=1)


class AlertSettings(_Model):
    """A second alert channel that does not go through the mail transport."""

    #: a Microsoft Teams or Slack incoming webhook ("" = off); it holds a token:
    #: prefer the environment variable KCG_ALERTS__WEBHOOK_URL
    webhook_url: str = ""
    timeout_seconds: float = 10.0


class OperatorContact(_Model):
    """The operator: who set up ``config/`` and keeps the installation running."""

    name: OneLine = ""
    email: Email


class Transport(_Model):
    mail: MailSettings = MaildirSettings()
    archive: ArchiveSettings = LocalArchiveSettings()
    inbound: Inbound = Inbound()
    distribution: Distribution = Distribution()
    alerts: AlertSettings = AlertSettings()
    alerts_to: list[str] = []
    #: who gets the technical side of an alert (the error, the commands, the files);
    #: empty: nobody does, and the coordinator's alert says whom to ask
    operator_contacts: list[OperatorContact] = []
    prefect_ui_url: str = "http://127.0.0.1:4200"

    @field_validator("operator_contacts", mode="before")
    @classmethod
    def _bare_addresses(cls, v: Any) -> Any:
        """``drift@example.se`` alone is an operator contact without a name."""
        if isinstance(v, str):  # KCG_OPERATOR_CONTACTS=drift@example.se,kim@example.se
            v = [p.strip() for p in v.split(",") if p.strip()]
        if isinstance(v, list):
            return [{"email": x} if isinstance(x, str) else x for x in v]
        return v

    @model_validator(mode="after")
    def _operators_once(self) -> Transport:
        twice = sorted(e for e, n in Counter(c.email for c in self.operator_contacts).items() if n > 1)
        if twice:
            raise ValueError(f"operator_contacts lists {', '.join(twice)} more than once (fix: list each address once)")
        return self

    @field_validator("mail", "archive", mode="before")
    @classmethod
    def _default_kind(cls, v: Any, info: ValidationInfo) -> Any:
        """No ``kind`` (or a blank one): the embedded default (maildir, local)."""
        if v is None:
            v = {}
        if isinstance(v, dict) and v.get("kind") in (None, ""):
            return {**v, "kind": "maildir" if info.field_name == "mail" else "local"}
        return v


# ---------------------------------------------------------------------- all


class Config(_Model):
    directory: str
    network: Network
    plans: list[Plan]
    meetings: Meetings
    transport: Transport
    #: config/projects.yaml (optional): project groups
    projects: Projects = Projects()
    #: where plans adopted by the coordinator's reply are kept (``<workdir>/plans``; "" = none)
    plans_directory: str = ""

    def all_meetings(self) -> list[PlannedMeeting]:
        return [m for p in self.plans for m in p.meetings]
