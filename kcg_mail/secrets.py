"""Secrets come from the environment or from Prefect Secret blocks, never
from config files, and never reach logs: every value read here is registered
and masked in every log record."""

from __future__ import annotations

import logging
import os

_KNOWN: set[str] = set()


_base_factory = logging.getLogRecordFactory()


def _masking_factory(*args, **kwargs) -> logging.LogRecord:
    """Mask secrets when a record is created, whatever logger or handler it
    later reaches (libraries' child loggers, handlers added after start-up)."""
    record = _base_factory(*args, **kwargs)
    if _KNOWN:
        msg = record.getMessage()
        masked = msg
        for s in _KNOWN:
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

            value = Secret.load(f"kcg-{name.lower().replace('_', '-')}").get()
        except Exception:
            value = None
    if value:
        _KNOWN.add(value)
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
