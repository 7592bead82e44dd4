"""Wire configuration to adapters: the one place that knows which concrete
mail transport and archive a run uses (cosmicpython's bootstrap).

Embedded defaults (nothing configured): Maildir under ``<workdir>/mail``, a
local folder ``<workdir>/dropbox`` and SQLite ``<workdir>/state.sqlite``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from kcg_mail.config_loader import Config, ConfigError, load_config
from kcg_mail.ports import Archive, MailTransport
from kcg_mail.secrets import install_log_filter, reply_secret, require
from kcg_mail.services.app import App
from kcg_mail.services.compose import DEFAULT_TEMPLATES, Composer

DEFAULT_WORKDIR = Path("var")


def _int(v: Any, default: int) -> int:
    return int(v) if v not in (None, "") else default


class _Settings:
    """A transport section's settings; a missing one is a config error that
    names the file, the field and the fix."""

    def __init__(self, cfg: Config, section: str, values: dict[str, Any]):
        self.file = Path(cfg.directory) / "transport.yaml"
        self.section, self.values = section, values

    def __getitem__(self, field: str) -> Any:
        value = self.values.get(field)
        if value in (None, ""):
            kind = self.values.get("kind", "")
            raise ConfigError([
                f"{self.file}: {self.section}.{field}: missing, needed for {self.section} kind '{kind}' "
                f"(fix: add {field}: under {self.section}: or set KCG_{self.section.upper()}__{field.upper()})"
            ])
        return value

    def get(self, field: str, default: Any = None) -> Any:
        value = self.values.get(field)
        return default if value in (None, "") else value


SECURITY = {"smtp_security": ("starttls", "tls", "none"), "imap_security": ("tls", "starttls", "none")}


def _security(cfg: Config, extra: _Settings, field: str, default: str) -> str:
    value = str(extra.get(field, default)).lower()
    if value not in SECURITY[field]:
        allowed = SECURITY[field]
        raise ConfigError([
            f"{Path(cfg.directory) / 'transport.yaml'}: mail.{field}: {value!r} is not a security setting "
            f"(fix: use one of {', '.join(allowed)}: 'starttls' for a submission port like 587 (or IMAP 143), "
            f"'tls' for an implicit-TLS port like 465 (or IMAP 993), 'none' only for a server on this machine "
            f"(loopback), which sends the password unencrypted)"])
    return value


def make_mail(cfg: Config, workdir: Path, *, create: bool = True) -> MailTransport:
    """``create=False``: for ``kcg check --connect``, which changes nothing."""
    s = cfg.transport.mail
    extra = _Settings(cfg, "mail", {"kind": s.kind, **(s.model_extra or {})})
    if s.kind == "maildir":
        from kcg_mail.adapters.maildir import MaildirTransport

        return MaildirTransport(Path(extra.get("path") or workdir / "mail"), create=create)
    if s.kind == "smtp_imap":
        from kcg_mail.adapters.smtp_imap import SmtpImapTransport

        smtp_security = _security(cfg, extra, "smtp_security", "starttls")
        imap_security = _security(cfg, extra, "imap_security", "tls")
        return SmtpImapTransport(
            smtp_host=extra["smtp_host"], smtp_port=_int(extra.get("smtp_port"), 587),
            imap_host=extra.get("imap_host") or extra["smtp_host"], imap_port=_int(extra.get("imap_port"), 993),
            username=extra.get("username") or cfg.network.mailbox.email, password=require("smtp_password"),
            smtp_security=smtp_security, imap_security=imap_security,
            sent_folder=extra.get("sent_folder", "Sent"),
            timeout=float(extra.get("timeout") or 30),
            processed_folder=extra.get("processed_folder", "processed"),
            quarantine_folder=extra.get("quarantine_folder", "quarantine"),
        )
    if s.kind == "exchange":
        from kcg_mail.adapters.exchange import ExchangeTransport

        auth = extra.get("auth", "oauth")
        kw: dict[str, Any] = dict(mailbox=extra.get("mailbox") or cfg.network.mailbox.email, auth=auth,
                                  service_endpoint=extra["service_endpoint"], version=extra.get("version"),
                                  autodiscover=str(extra.get("autodiscover", "false")).lower() == "true")
        if auth == "oauth":
            kw.update(client_id=extra["client_id"], tenant_id=extra["tenant_id"], client_secret=require("ews_client_secret"))
        else:
            kw.update(username=extra["username"], password=require("ews_password"))
        return ExchangeTransport(**kw)
    if s.kind == "graph":
        from kcg_mail.adapters.graph import GraphTransport

        return GraphTransport(mailbox=extra.get("mailbox") or cfg.network.mailbox.email, tenant_id=extra["tenant_id"],
                              client_id=extra["client_id"], client_secret=require("graph_client_secret"))
    raise ValueError(s.kind)  # pragma: no cover - validated by config


def make_archive(cfg: Config, workdir: Path) -> Archive:
    s = cfg.transport.archive
    extra = _Settings(cfg, "archive", {"kind": s.kind, **(s.model_extra or {})})
    if s.kind == "local":
        from kcg_mail.adapters.local_archive import LocalFolderArchive

        base = Path(extra.get("path") or workdir / "dropbox")
        return LocalFolderArchive(base.joinpath(*[p for p in s.root.split("/") if p]))
    from kcg_mail.adapters.dropbox_archive import DropboxArchive

    return DropboxArchive(
        root=s.root, app_key=extra["app_key"], app_secret=require("dropbox_app_secret"), refresh_token=require("dropbox_refresh_token"),
        team_root_namespace_id=extra.get("team_root_namespace_id"), team_member_id=extra.get("team_member_id"),
    )


@lru_cache(maxsize=8)
def _checked_renderer(path: str, mtime_ns: int, size: int):
    """Parse and check a template once per version of the file: a process that
    runs many flows (``kcg serve``, the demo) does not redo it per run."""
    from kcg_mail.documents.render import ProtocolRenderer
    from kcg_mail.documents.template_check import check_template

    problems = check_template(Path(path))
    return (None if problems else ProtocolRenderer(Path(path))), tuple(problems)


def _renderer_for(path: Path):
    st = path.stat()
    return _checked_renderer(str(path), st.st_mtime_ns, st.st_size)


def load_renderer(templates_dir: Path, workdir: Path | None = None):
    """The protocol renderer, from the coordinator's template when it passes
    ``check_template``; otherwise from the last good copy (kept in the work
    directory), with the problems returned so the run reports them."""
    import shutil

    current = templates_dir / "protocol.docx"
    renderer, problems = _renderer_for(current)
    if renderer is not None:
        if workdir is not None:
            good = workdir / "last-good-template" / "protocol.docx"
            if not good.exists() or good.stat().st_size != current.stat().st_size or good.read_bytes() != current.read_bytes():
                good.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(current, good)
        return renderer, []
    good = workdir / "last-good-template" / "protocol.docx" if workdir is not None else None
    fallback = good if good is not None and good.exists() else DEFAULT_TEMPLATES / "protocol.docx"
    notes = [f"templates/protocol.docx är trasig och används inte: {p}" for p in problems]
    notes.append(f"Gör: rätta mallen (kör `kcg check`); tills dess används den senaste fungerande ({fallback}).")
    fallback_renderer, _ = _renderer_for(fallback)
    return fallback_renderer, notes


def bootstrap(workdir: Path | str = DEFAULT_WORKDIR, config_dir: Path | str | None = None,
              templates_dir: Path | str | None = None, *, cfg: Config | None = None,
              mail: MailTransport | None = None, archive: Archive | None = None,
              state_path: Path | None = None, guard_state: bool = True) -> App:
    """``guard_state=False`` opens the state without the reset check and backup (only
    for ``kcg state`` itself and for alerts about a reset state, see state_guard)."""
    from kcg_mail.adapters.sqlite_state import SqliteState
    from kcg_mail.state_guard import open_state

    install_log_filter()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = cfg or load_config(config_dir)
    templates = Path(templates_dir or DEFAULT_TEMPLATES)
    renderer, template_problems = load_renderer(templates, workdir)
    mail = mail or make_mail(cfg, workdir)
    archive = archive or make_archive(cfg, workdir)
    state_file = Path(state_path or workdir / "state.sqlite")
    state = open_state(workdir, mail, archive, state_path=state_file) if guard_state else SqliteState(state_file)
    return App(
        cfg=cfg,
        state=state,
        mail=mail,
        archive=archive,
        composer=Composer(cfg, templates),
        renderer=renderer,
        template_problems=template_problems,
        reply_secret=reply_secret(workdir),
    )


def alert_app(workdir: str | Path, config_dir: str | None) -> tuple[App, str | None]:
    """The app to send an alert with: the configured one, or, when the
    configuration itself is broken, the last one that loaded. Returns
    (app, note about the fallback or None)."""
    from kcg_mail.services.alerts import LAST_GOOD_CONFIG
    from kcg_mail.state_guard import StateReset

    try:
        return bootstrap(workdir, config_dir), None
    except StateReset:
        # The run refused a reset state; the alert must not write into it (that would
        # make it look used). Its once-a-day record goes to a side file instead.
        note = "Tillståndsfilen saknas eller är tömd; larmet registreras i alert-state.sqlite."
        return bootstrap(workdir, config_dir, state_path=Path(workdir) / "alert-state.sqlite", guard_state=False), note
    except ConfigError:
        snap = Path(workdir) / LAST_GOOD_CONFIG
        if not (snap / "network.yaml").exists():
            raise
        note = f"Konfigurationen kunde inte läsas; larmet skickas med den senast fungerande kopian i {snap}."
        return bootstrap(workdir, snap), note


@contextmanager
def dry_run_app(workdir: Path | str, config_dir: Path | str | None = None) -> Iterator[tuple[App, Path]]:
    """An App on a throw-away copy of ``workdir``'s state record, with the
    embedded Maildir and a local archive in a temp folder, whatever the
    configured transport (``kcg preview``); yields (app, its Maildir sent folder).
    The real install is not touched: the state is copied with SQLite's backup
    API (consistent while ``kcg serve`` writes it), the reply secret so that
    Message-IDs and reply keys are those of the real run."""
    import shutil
    import sqlite3
    import tempfile

    from kcg_mail.adapters.local_archive import LocalFolderArchive
    from kcg_mail.adapters.maildir import MaildirTransport
    from kcg_mail.secrets import REPLY_SECRET_FILE

    tmp = Path(tempfile.mkdtemp(prefix="kcg-dry-run-"))
    try:
        src = Path(workdir) / "state.sqlite"
        if src.exists():
            with sqlite3.connect(f"file:{src}?mode=ro", uri=True) as a, sqlite3.connect(tmp / "state.sqlite") as b:
                a.backup(b)
        if (Path(workdir) / REPLY_SECRET_FILE).exists():
            shutil.copy2(Path(workdir) / REPLY_SECRET_FILE, tmp / REPLY_SECRET_FILE)
        app = bootstrap(tmp, config_dir, mail=MaildirTransport(tmp / "mail"), archive=LocalFolderArchive(tmp / "dropbox"),
                        guard_state=False)
        with app:
            yield app, tmp / "mail" / "sent"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
