"""Prefect automations for what no run can report itself: runs that stay
Late (``kcg serve`` or the worker is down) or Running (the process was
killed). Defined in ``automations/*.yaml`` (``${short}`` = the network's
short name), created or updated by ``kcg serve`` and ``kcg listen``; they
notify through a webhook notification block made from ``alerts.webhook_url``
(the URL is kept in the block's secrets)."""

from __future__ import annotations

import logging
from pathlib import Path
from string import Template
from typing import Any

import yaml

AUTOMATIONS_DIR = Path(__file__).resolve().parent.parent.parent / "automations"
log = logging.getLogger("kcg.automations")


def block_name(short: str) -> str:
    import re

    return "kcg-larm-" + (re.sub(r"[^a-z0-9]+", "-", short.lower()).strip("-") or "kcg")


def definitions(short: str, directory: Path = AUTOMATIONS_DIR) -> list[dict[str, Any]]:
    return [yaml.safe_load(Template(f.read_text(encoding="utf-8")).safe_substitute(short=short))
            for f in sorted(directory.glob("*.yaml"))]


def notification_block(short: str, webhook_url: str) -> Any:
    """The webhook block (Teams/Slack JSON, like kcg_mail.services.alerts); returns its document id."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    block = CustomWebhookNotificationBlock(
        name=f"{short} larm", url="{{webhook_url}}", method="POST",
        json_data={"@type": "MessageCard", "@context": "https://schema.org/extensions", "summary": "{{subject}}",
                   "themeColor": "C4314B", "text": "{{subject}}\n\n{{body}}"},
        secrets={"webhook_url": webhook_url},
    )
    return block.save(block_name(short), overwrite=True)


def ensure_automations(cfg: Any) -> list[str]:
    """Create or update the automations; returns their names ([] without a webhook)."""
    from prefect.client.orchestration import get_client
    from prefect.events.schemas.automations import AutomationCore

    short = cfg.network.short
    url = cfg.transport.alerts.webhook_url
    if not url:
        log.info(  # a normal setup: kcg check says it (no warning at every start)
            "no alerts.webhook_url: no automations for late or stuck runs (see README, 'Alerts that arrive when the mail is what broke')")
        return []
    block_id = notification_block(short, url)
    names = []
    with get_client(sync_client=True) as client:
        for d in definitions(short):
            for action in d.get("actions", []):
                if action.get("type") == "send-notification":
                    action["block_document_id"] = str(block_id)
            automation = AutomationCore.model_validate(d)
            existing = client.read_automations_by_name(automation.name)
            if existing:
                client.update_automation(existing[0].id, automation)
                for extra in existing[1:]:
                    client.delete_automation(extra.id)
            else:
                client.create_automation(automation)
            names.append(automation.name)
    return names
