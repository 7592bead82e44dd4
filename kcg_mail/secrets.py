"""Secrets come from the environment or from Prefect Secret blocks, never
from config files, and never reach logs: every value read here is registered
and masked in every log record."""

from __future__ import annotations

import logging
import os
from typing import Any

_KNOWN: set[str] = set()
#: A value this short is not masked: it would be masked in every word of every log line
#: (a one-letter test password turns "mail" into "m***il"), and no mail, Graph or
#: Dropbox credential is that short.
MIN_MASKED = 4


def _remember(value: str) -> None:
    if len(value) >= MIN_MASKED:
        _KNOWN.add(value)


_base_factory = logging.getLogRecordFactory()


def _masking_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    """Mask secrets when a record is created, whatever logger or handler it
    later reaches (libraries' child loggers, handlers added after start-up)."""
    record = _base_factory(*args, **kwargs)
    if _KNOWN:
        msg = record.getMessage()
        masked = msg
        for s in sorted(_KNOWN, key=len, reverse=True):  # a secret that contains another: all of it
            masked = masked.replace(s, "***")
        if masked != msg:
            record.msg, record.args = masked, ()
    return record


def install_log_filter() -> None:
    """Mask every secret read through this module in every log record."""
    if logging.getLogRecordFactory() is not _masking_factory:
        logging.setLogRecordFactory(_masking_factory)


def secret(name: str, environ: dict[str, str] | None = None) -> str | None:
    """``name`` like ``smtp_password``: env ``KCG_SMTP_PASSWORD``, else the
    Prefect Secret block ``kcg-smtp-password`` (when a Prefect API is set)."""
    env = os.environ if environ is None else environ
    value = env.get(f"KCG_{name.upper()}")
    if not value and env.get("PREFECT_API_URL"):
        try:
            from prefect.blocks.system import Secret

            block: Any = Secret.load(f"kcg-{name.lower().replace('_', '-')}")  # called from sync code: the block, not a coroutine
            value = block.get()
        except Exception:
            value = None
    if value:
        _remember(value)
    return value or None


def require(name: str, environ: dict[str, str] | None = None) -> str:
    value = secret(name, environ)
    if not value:
        raise MissingSecret(
            f"secret {name} is not set (fix: export KCG_{name.upper()}=... or create the Prefect Secret block "
            f"'kcg-{name.lower().replace('_', '-')}')"
        )
    return value


class MissingSecret(RuntimeError):
    pass


REPLY_SECRET_FILE = "reply-secret"


def reply_secret(workdir: str | os.PathLike[str], environ: dict[str, str] | None = None) -> bytes:
    """The HMAC secret of reply keys: ``KCG_REPLY_SECRET`` or the Prefect Secret
    ``kcg-reply-secret``; if neither exists, generated once into
    ``<workdir>/reply-secret`` (mode 0600) and read from there afterwards.
    Never logged (registered for masking like every secret)."""
    import secrets as _secrets
    from pathlib import Path

    value = secret("reply_secret", environ)
    if value:
        return value.encode("utf-8")
    path = Path(workdir) / REPLY_SECRET_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as fh:
            fh.write(_secrets.token_hex(32) + "\n")
    os.chmod(path, 0o600)
    value = path.read_text(encoding="utf-8").strip()
    if not value:
        raise MissingSecret(f"{path} is empty (fix: delete it, a new reply secret is generated on the next run, "
                            f"or set KCG_REPLY_SECRET)")
    _remember(value)
    return value.encode("utf-8")
