"""Reading ``config/``: YAML files and environment overrides into the pure
model of ``kcg_mail.core.config_model``. Every problem names the file, the field and
the fix; all problems are collected and raised together as ``ConfigError``.

``transport.yaml``'s sections can be overridden from the environment as
``KCG_<SECTION>__<FIELD>`` (``KCG_MAIL__KIND=smtp_imap``,
``KCG_ARCHIVE__ROOT=/Team``), read by pydantic-settings and merged over the
file before the typed models (a union on ``kind``) validate the result.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict
from pydantic_settings.sources.utils import parse_env_vars

from kcg_mail.core.config_model import (
    SECRET_FIELDS,
    ArchiveSettings,
    Config,
    ConfigError,
    DropboxSettings,
    ExchangeSettings,
    GraphSettings,
    LocalArchiveSettings,
    MaildirSettings,
    MailSettings,
    Meetings,
    Network,
    Plan,
    SmtpImapSettings,
    Transport,
)
from kcg_mail.core.projects_model import Projects
from kcg_mail.core.round import PlanningSettings

#: what the shell imports from here: the loaders, and the models it passes on (typed transport settings)
__all__ = ["DEFAULT_CONFIG_DIR", "ArchiveSettings", "Config", "ConfigError", "DropboxSettings", "ExchangeSettings",
           "GraphSettings", "LocalArchiveSettings", "MailSettings", "MaildirSettings", "SmtpImapSettings",
           "MEMBERS_OVERLAY", "apply_members_overlay", "load_config", "load_installed", "load_planning", "read_members_overlay",
           "write_members_overlay"]

DEFAULT_CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"

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
            special = _transport_problem(err, data, file) if model is Transport else None
            if special is not None:
                problems.append(special)
                continue
            msg = err["msg"].removeprefix("Value error, ")
            fix = FIXES.get(err["type"], "")
            problems.append(f"{file}: {_loc(err['loc'])}: {msg}" + (f" (fix: {fix})" if fix and fix not in msg else ""))
        return None


#: the kinds of each transport.yaml section told apart by ``kind``
KINDS = {"mail": ("maildir", "smtp_imap", "exchange", "graph"), "archive": ("local", "dropbox")}


def _transport_problem(err: Any, data: Any, file: Path) -> str | None:
    """A transport.yaml problem in the words of the section: ``mail.tenant_id``
    (not the union's ``mail.graph.tenant_id``), a missing field with the
    variable that sets it, a wrong kind with the kinds there are."""
    loc = tuple(err["loc"])
    if not loc or loc[0] not in KINDS:
        return None
    section = str(loc[0])
    sect = data.get(section) if isinstance(data, dict) else None
    kind = str(sect.get("kind", "") if isinstance(sect, dict) else "")
    if len(loc) > 1 and loc[1] in KINDS[section]:
        loc = loc[:1] + loc[2:]
    kind_type = err["type"]
    if kind_type == "union_tag_invalid":
        tag = err.get("ctx", {}).get("tag", kind)
        return (f"{file}: {section}.kind: {tag!r} is not a known {section} kind "
                f"(fix: use one of {', '.join(KINDS[section])})")
    field = None
    why = f"{section} kind '{kind}'"
    if kind_type == "missing" and len(loc) == 2:
        field = str(loc[1])
    elif kind_type == "missing_for_kind":
        field, why = str(err["ctx"]["field"]), str(err["ctx"]["why"])
    if field is not None:
        return (f"{file}: {section}.{field}: missing, needed for {why} "
                f"(fix: add {field}: under {section}: or set KCG_{section.upper()}__{field.upper()})")
    msg = err["msg"].removeprefix("Value error, ")
    fix = FIXES.get(kind_type, "")
    if kind_type == "extra_forbidden" and kind:
        fix = f"remove it or check the spelling against the documented fields of {section} kind '{kind}' (README)"
    return f"{file}: {_loc(loc)}: {msg}" + (f" (fix: {fix})" if fix and fix not in msg else "")


def _read_yaml(file: Path, problems: list[str]) -> Any:
    try:
        # libyaml when present: 10x faster, and kcg serve loads the config on every intake run
        data = yaml.load(file.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
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


class TransportEnv(BaseSettings):
    """The environment variables that override transport.yaml, section by
    section: ``KCG_MAIL__SMTP_HOST`` is ``mail.smtp_host``. Values stay text
    here; the typed models of ``kcg_mail.core.config`` parse them."""

    model_config = SettingsConfigDict(env_prefix="KCG_", env_nested_delimiter="__", case_sensitive=False)

    mail: dict[str, Any] = {}
    archive: dict[str, Any] = {}
    inbound: dict[str, Any] = {}
    distribution: dict[str, Any] = {}
    alerts: dict[str, Any] = {}


class _EnvSource(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping (``load_config(environ=...)``)."""

    def __init__(self, environ: dict[str, str]) -> None:
        self._environ = environ
        super().__init__(TransportEnv)

    def _load_env_vars(self) -> Any:
        return parse_env_vars(self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str)


def env_overrides(environ: dict[str, str]) -> dict[str, dict[str, Any]]:
    """``{section: {field: value}}`` from ``KCG_<SECTION>__<FIELD>`` variables."""
    found = _EnvSource(environ)()
    return {section: dict(values) for section, values in found.items() if isinstance(values, dict) and values}


#: (transport kind, field) -> the secret name kcg_mail.bootstrap reads
SECRET_NAMES = {
    ("smtp_imap", "password"): "smtp_password", ("exchange", "password"): "ews_password",
    ("exchange", "client_secret"): "ews_client_secret", ("graph", "client_secret"): "graph_client_secret",
    ("dropbox", "app_secret"): "dropbox_app_secret", ("dropbox", "refresh_token"): "dropbox_refresh_token",
}


def _no_secrets(section: str, data: dict[str, Any], file: Path, problems: list[str]) -> dict[str, Any]:
    """Report every secret in a file section (never its value); the section without them."""
    kind = str(data.get("kind", ""))
    for key in data:
        if str(key).lower() in SECRET_FIELDS:
            name = SECRET_NAMES.get((kind, key.lower()), f"{kind}_{key}".strip("_"))
            problems.append(
                f"{file}: {section}.{key}: secrets must not be stored in config files (fix: remove it and set the "
                f"environment variable KCG_{name.upper()} or the Prefect Secret block "
                f"'kcg-{name.lower().replace('_', '-')}'; see README)"
            )
    return {k: v for k, v in data.items() if str(k).lower() not in SECRET_FIELDS}


def load_config(directory: Path | str | None = None, environ: dict[str, str] | None = None, *,
                plans_dir: Path | str | None = None, members_dir: Path | str | None = None) -> Config:
    """Load and validate every file; raise ConfigError listing all problems.

    ``plans_dir`` (``<workdir>/plans``): plans adopted by the coordinator's reply
    (``kcg_mail.services.plan_adoption``), read with ``config/plan-*.yaml``."""
    environ = dict(os.environ if environ is None else environ)
    directory = Path(directory or environ.get("KCG_CONFIG_DIR") or DEFAULT_CONFIG_DIR)
    problems: list[str] = []
    if not directory.is_dir():
        raise ConfigError([f"{directory}: config directory not found (fix: pass --config DIR or set KCG_CONFIG_DIR)"])

    net_file = directory / "network.yaml"
    network = _validate(Network, _read_yaml(net_file, problems), net_file, problems)
    if network is not None and members_dir is not None:  # the coordinator's members (``members_dir``: the workdir)
        network = overlay_network(network, members_dir)

    plan_files = sorted(directory.glob("plan-*.yaml"))
    if plans_dir is not None and Path(plans_dir).is_dir():
        plan_files += sorted(Path(plans_dir).glob("plan-*.yaml"))
    if not plan_files:
        problems.append(f"{directory}: no plan-YYYY.yaml found (fix: add the year plan, e.g. plan-2023.yaml)")
    plans: list[tuple[Path, Plan]] = []
    for pf in plan_files:
        p = _validate(Plan, _read_yaml(pf, problems), pf, problems)
        if p is not None:
            plans.append((pf, p))

    from kcg_mail.core.years import plan_file_problems

    problems += plan_file_problems([(str(pf), p) for pf, p in plans])

    mt_file = directory / "meetings.yaml"
    meetings = _validate(Meetings, _read_yaml(mt_file, problems), mt_file, problems)

    tr_file = directory / "transport.yaml"
    tr_data = _read_yaml(tr_file, problems) if tr_file.exists() else {}
    transport = None
    if tr_data is not None:
        for section in ("mail", "archive"):
            sect = tr_data.get(section) or {}
            if isinstance(sect, dict):
                tr_data[section] = _no_secrets(section, sect, tr_file, problems)
        for section, values in env_overrides(environ).items():
            sect = tr_data.get(section) or {}
            tr_data[section] = {**sect, **values} if isinstance(sect, dict) else values
        transport = _validate(Transport, tr_data, tr_file, problems)

    # cross-references: hosts, guests, unique ids and months
    if network is not None:
        # an adopted plan may name a member the coordinator added by reply (the workdir's members
        # overlay): its hosts are checked against the overlaid network (``adopted_plan_problems``)
        adopted = {pf for pf, _ in plans if plans_dir is not None and pf.parent == Path(plans_dir)}
        problems += plan_problems(plans, network, net_file, hosts_later=adopted)
        for kind, rules in (meetings.kinds.items() if meetings is not None else ()):
            for name in rules.audience:
                if name not in network.audiences:
                    problems.append(
                        f"{mt_file}: kinds.{kind}.audience: '{name}' is not an audience list in {net_file} "
                        f"(fix: add audiences: {{{name}: [...]}} to network.yaml, or use one of "
                        f"{', '.join(sorted(network.audiences)) or '(none yet)'})")
    projects = _load_projects(directory, network, problems)
    if problems:
        raise ConfigError(problems)
    return Config(directory=str(directory), network=network, plans=[p for _, p in plans], meetings=meetings,
                  transport=transport, projects=projects, plans_directory=str(plans_dir or ""))


def plan_problems(plans: list[tuple[Path, Plan]], network: Network, net_file: Path, *,
                  hosts_later: set[Path] | None = None) -> list[str]:
    """The cross-references of plan files: hosts and guests known, ids unique, dates in their month
    (the hosts of the files in ``hosts_later`` are left to ``adopted_plan_problems``)."""
    problems: list[str] = []
    ids = {p.id for p in network.members}
    guest_ids = {p.id for p in network.guests}
    seen: dict[str, Path] = {}
    for pf, plan in plans:
        for i, m in enumerate(plan.meetings):
            where = f"{pf}: meetings[{i}] ({m.month})"
            for field in ("host", "backup_host"):
                pid = getattr(m, field)
                if pid is not None and pid not in ids and pf not in (hosts_later or set()):
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
            if m.meeting_id in seen and not (m.month.endswith("-01") and seen[m.meeting_id] != pf):
                # (a January meeting in two files is reported by plan_file_problems, naming both)
                problems.append(f"{where}.id: meeting id '{m.meeting_id}' already used in {seen[m.meeting_id]} (fix: set a unique id:)")
            seen[m.meeting_id] = pf
            if m.date and m.date.strftime("%Y-%m") != m.month and not m.tentative:
                problems.append(f"{where}.date: {m.date} is not in month {m.month} (fix: correct the date or the month)")
    return problems



def _load_projects(directory: Path, network: Network | None, problems: list[str]) -> Projects:
    """config/projects.yaml (optional): project groups, cross-checked against network.yaml."""
    from kcg_mail.core.projects import cross_check

    file = directory / "projects.yaml"
    if not file.exists():
        return Projects()
    data = _read_yaml(file, problems)
    projects: Projects | None = _validate(Projects, data, file, problems)
    if projects is None:
        return Projects()
    if network is not None:
        problems += [f"{file}: {p}" for p in cross_check(projects, (m.id for m in network.members))]
    return projects


# ------------------------------------------------------------------ the planning round


def load_planning(directory: Path | str | None = None, environ: dict[str, str] | None = None) -> PlanningSettings | None:
    """``config/planning.yaml`` (the yearly planning round), or None when the
    file is absent. Problems name the file, the field and the fix."""
    environ = dict(os.environ if environ is None else environ)
    directory = Path(directory or environ.get("KCG_CONFIG_DIR") or DEFAULT_CONFIG_DIR)
    file = directory / "planning.yaml"
    if not file.exists():
        return None
    problems: list[str] = []
    settings: PlanningSettings | None = _validate(PlanningSettings, _read_yaml(file, problems), file, problems)
    if settings is not None:
        net_file = directory / "network.yaml"
        try:
            net = yaml.safe_load(net_file.read_text(encoding="utf-8")) or {}
            ids = {str(m["id"]) for m in net.get("members", []) if isinstance(m, dict) and m.get("id")}
        except (OSError, yaml.YAMLError, AttributeError):
            ids = set()
        for year, r in settings.rounds.items():
            for i, group in enumerate(r.previous_groups):
                for pid in group:
                    if ids and pid not in ids:
                        problems.append(f"{file}: rounds.{year}.previous_groups[{i}]: '{pid}' is not a member id in "
                                        f"{net_file} (fix: use one of {', '.join(sorted(ids))})")
    if problems:
        raise ConfigError(problems)
    return settings


# ------------------------------------------------------------------ the members overlay

#: the members the coordinator added or removed (by reply or in Prefect), in the work directory:
#: ``network.yaml`` stays the operator's setup; this file is written by kcg-mail only
MEMBERS_OVERLAY = "members.yaml"
_OVERLAY_HEADER = ("# Members the coordinator added or removed (by replying \"ja\" or in the Prefect forms\n"
                   "# kcg-member-add / kcg-member-remove). Written by kcg-mail; read over config/network.yaml.\n")


def read_members_overlay(workdir: Path | str) -> dict[str, list[dict[str, str]]]:
    """``{"added": [person fields...], "removed": [{"email": ...}...]}`` (empty when none)."""
    file = Path(workdir) / MEMBERS_OVERLAY
    if not file.is_file():
        return {"added": [], "removed": []}
    problems: list[str] = []
    data = _read_yaml(file, problems)
    if problems or not isinstance(data, dict):
        raise ConfigError(problems or [f"{file}: expected added: and removed: lists (fix: restore it from the backup)"])
    return {"added": [dict(x) for x in data.get("added") or [] if isinstance(x, dict)],
            "removed": [dict(x) for x in data.get("removed") or [] if isinstance(x, dict)]}


def write_members_overlay(workdir: Path | str, data: dict[str, list[dict[str, str]]]) -> None:
    """Write the overlay atomically (temporary file, fsync, rename)."""
    file = Path(workdir) / MEMBERS_OVERLAY
    tmp = file.with_suffix(".yaml.tmp")
    text = _OVERLAY_HEADER + yaml.safe_dump({"added": data.get("added", []), "removed": data.get("removed", [])},
                                            allow_unicode=True, sort_keys=False, default_flow_style=False)
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, file)


def load_installed(workdir: Path | str, directory: Path | str | None = None, cfg: Config | None = None) -> Config:
    """The configuration every run of an installation works with: ``config/`` (or
    ``cfg``, already loaded from it) with what the coordinator decided by reply in
    ``workdir``: the plans he adopted (``<workdir>/plans``) and the members he added
    or removed (``members.yaml``); an adopted plan's host may be a member added by
    reply. Raises ConfigError naming file, field and fix."""
    workdir = Path(workdir)
    cfg = apply_members_overlay(cfg or load_config(directory, plans_dir=workdir / "plans", members_dir=workdir),
                                workdir)
    problems = adopted_plan_problems(cfg)
    if problems:
        raise ConfigError(problems)
    return cfg


def apply_members_overlay(cfg: Config, workdir: Path | str) -> Config:
    """The config with the coordinator's added members in ``network.members`` and his
    removed ones inactive (``active: false``: no invitation, no distribution, no round).
    A person already in network.yaml (the operator added them there too) is taken from
    there; the coordinator himself is never removed."""
    net = overlay_network(cfg.network, workdir)
    return cfg if net is cfg.network else cfg.model_copy(update={"network": net})


def overlay_network(net: Network, workdir: Path | str) -> Network:
    """``network`` with the members overlay of ``workdir`` (``apply_members_overlay``)."""
    from kcg_mail.core.config_model import Person

    data = read_members_overlay(workdir)
    if not data["added"] and not data["removed"]:
        return net
    members = list(net.members)
    known = {p.email for p in members + net.guests}
    ids = {p.id for p in members + net.guests}
    file = Path(workdir) / MEMBERS_OVERLAY
    for i, entry in enumerate(data["added"]):
        fields = {k: str(v) for k, v in entry.items() if k in ("id", "name", "organisation", "city", "email")}
        try:
            person = Person(**fields)
        except ValidationError as exc:
            raise ConfigError([f"{file}: added[{i}]: {exc.errors()[0].get('msg')} (fix: restore the file from the "
                               "backup or remove the entry)"]) from None
        if person.email in known:
            continue
        pid = person.id
        while pid in ids:
            pid += "2"
        members.append(person.model_copy(update={"id": pid}))
        known.add(person.email)
        ids.add(pid)
    gone = {str(x.get("email", "")).lower() for x in data["removed"]}
    members = [p.model_copy(update={"active": False}) if p.email in gone and p.role != "coordinator" else p
               for p in members]
    return net.model_copy(update={"members": members})


def adopted_plan_problems(cfg: Config) -> list[str]:
    """The plans adopted by reply (``<workdir>/plans``) checked against the network with the
    coordinator's added members (``apply_members_overlay``): their hosts may be new members."""
    if not cfg.plans_directory:
        return []
    files = [(Path(cfg.plans_directory) / f"plan-{p.year}.yaml", p) for p in cfg.plans]
    return plan_problems([(pf, p) for pf, p in files if pf.exists()], cfg.network, Path(cfg.directory) / "network.yaml")
