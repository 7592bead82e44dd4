"""Wire configuration to adapters: the one place that knows which concrete
mail transport and archive a run uses (cosmicpython's bootstrap).

Embedded defaults (nothing configured): Maildir under ``<workdir>/mail``, a
local folder ``<workdir>/dropbox`` and SQLite ``<workdir>/state.sqlite``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kcg_mail.documents.render import ProtocolRenderer

from kcg_mail.config_loader import MEMBERS_OVERLAY, load_installed
from kcg_mail.core.config_model import (
    Config,
    ConfigError,
    ExchangeSettings,
    LocalArchiveSettings,
    MaildirSettings,
    SmtpImapSettings,
)
from kcg_mail.ports import Archive, MailSource, MailTransport
from kcg_mail.secrets import install_log_filter, reply_secret, require
from kcg_mail.services.app import App
from kcg_mail.services.compose import DEFAULT_TEMPLATES, Composer

if TYPE_CHECKING:
    from kcg_mail.documents.render import ProtocolRenderer

DEFAULT_WORKDIR = Path("var")


def make_mail(cfg: Config, workdir: Path, *, create: bool = True) -> MailTransport:
    """``create=False``: for ``kcg check --connect``, which changes nothing.
    The settings are typed and checked when the config loads (kcg_mail.config_loader);
    the secrets come from the environment or Prefect Secret blocks."""
    s = cfg.transport.mail
    if isinstance(s, MaildirSettings):
        from kcg_mail.adapters.maildir import MaildirTransport

        return MaildirTransport(Path(s.path or workdir / "mail"), create=create)
    if isinstance(s, SmtpImapSettings):
        from kcg_mail.adapters.smtp_imap import SmtpImapTransport

        return SmtpImapTransport(
            smtp_host=s.smtp_host, smtp_port=s.smtp_port,
            imap_host=s.imap_host or s.smtp_host, imap_port=s.imap_port,
            username=s.username or cfg.network.mailbox.email, password=require("smtp_password"),
            smtp_security=s.smtp_security, imap_security=s.imap_security,
            sent_folder=s.sent_folder,
            timeout=s.timeout,
            processed_folder=s.processed_folder,
            quarantine_folder=s.quarantine_folder,
        )
    if isinstance(s, ExchangeSettings):
        from kcg_mail.adapters.exchange import ExchangeTransport
        from kcg_mail.adapters.exchange_ews import EwsSession

        kw: dict[str, Any] = dict(mailbox=s.mailbox or cfg.network.mailbox.email, auth=s.auth,
                                  service_endpoint=s.service_endpoint, version=s.version,
                                  autodiscover=s.autodiscover, max_wait=s.max_wait)
        if s.auth == "oauth":
            kw.update(client_id=s.client_id, tenant_id=s.tenant_id, client_secret=require("ews_client_secret"))
        else:
            kw.update(username=s.username, password=require("ews_password"))
        return ExchangeTransport(EwsSession(**kw))
    from kcg_mail.adapters.graph import GraphTransport
    from kcg_mail.adapters.graph_http import GraphClient

    return GraphTransport(GraphClient(mailbox=s.mailbox or cfg.network.mailbox.email, tenant_id=s.tenant_id,
                                      client_id=s.client_id, client_secret=require("graph_client_secret")))


def make_source(cfg: Config, workdir: Path, stop: threading.Event | None = None, *,
                cursor: str | None = None) -> MailSource:
    """The push source of the configured mail transport for the listener, on a
    transport (connection) of its own, never the intake's: IMAP IDLE for
    smtp_imap, a directory watch for maildir, a poll from ``cursor`` (the
    intake's stored one) for graph and exchange."""
    return make_mail(cfg, Path(workdir)).mail_source(stop=stop, cursor=cursor)


def make_archive(cfg: Config, workdir: Path) -> Archive:
    s = cfg.transport.archive
    if isinstance(s, LocalArchiveSettings):
        from kcg_mail.adapters.local_archive import LocalFolderArchive

        base = Path(s.path or workdir / "dropbox")
        return LocalFolderArchive(base.joinpath(*[p for p in s.root.split("/") if p]))
    from kcg_mail.adapters.dropbox_archive import DropboxArchive

    return DropboxArchive(
        root=s.root, app_key=s.app_key, app_secret=require("dropbox_app_secret"), refresh_token=require("dropbox_refresh_token"),
        team_root_namespace_id=s.team_root_namespace_id, team_member_id=s.team_member_id,
    )


@lru_cache(maxsize=8)
def _checked_renderer(path: str, mtime_ns: int, size: int) -> tuple[ProtocolRenderer | None, tuple[str, ...]]:
    """Parse and check a template once per version of the file: a process that
    runs many flows (``kcg serve``, the demo) does not redo it per run."""
    from kcg_mail.documents.render import ProtocolRenderer
    from kcg_mail.documents.template_check import check_template

    problems = check_template(Path(path))
    return (None if problems else ProtocolRenderer(Path(path))), tuple(problems)


def _renderer_for(path: Path) -> tuple[ProtocolRenderer | None, tuple[str, ...]]:
    st = path.stat()
    return _checked_renderer(str(path), st.st_mtime_ns, st.st_size)


def load_renderer(templates_dir: Path, workdir: Path | None = None) -> tuple[ProtocolRenderer | None, list[str]]:
    """The protocol renderer, from the coordinator's template when it passes
    ``check_template``; otherwise from the last good copy (kept in the work
    directory), with the problems returned so the run reports them."""
    import logging
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
    last_good = workdir / "last-good-template" / "protocol.docx" if workdir is not None else None
    fallback = last_good if last_good is not None and last_good.exists() else DEFAULT_TEMPLATES / "protocol.docx"
    # shown in the coordinator's overview: what is wrong, in words; the file and the check are the operator's
    notes = [f"protokollmallen går inte att använda: {p}" for p in problems]
    notes.append("den senaste fungerande protokollmallen används tills den tekniska kontakten har rättat mallen.")
    logging.getLogger("kcg.bootstrap").warning("templates/protocol.docx is broken (%s); using %s until it is fixed "
                                               "(kcg check shows the problem)", "; ".join(problems), fallback)
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
    cfg = load_installed(workdir, config_dir, cfg)
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
        for name in (REPLY_SECRET_FILE, MEMBERS_OVERLAY):
            if (Path(workdir) / name).exists():
                shutil.copy2(Path(workdir) / name, tmp / name)
        app = bootstrap(tmp, config_dir, mail=MaildirTransport(tmp / "mail"), archive=LocalFolderArchive(tmp / "dropbox"),
                        guard_state=False)
        with app:
            yield app, tmp / "mail" / "sent"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
