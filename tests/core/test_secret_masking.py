"""Secrets never reach a log line: every value read through kcg_mail.secrets is masked
in every record, whole even when one secret contains another; a value too short to be a
credential is not, since masking it would garble every line ("mail" -> "m***il")."""

from __future__ import annotations

import logging
import uuid

import pytest

from kcg_mail.secrets import MIN_MASKED, install_log_filter, secret

pytestmark = pytest.mark.core


def _logged(caplog, text: str) -> str:
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="kcg.test-secrets"):
        logging.getLogger("kcg.test-secrets").info("%s", text)
    (record,) = caplog.records
    return record.getMessage()


def test_a_secret_read_from_the_environment_is_masked_in_every_record(caplog):
    install_log_filter()
    password = f"pw-{uuid.uuid4().hex}"
    assert secret("smtp_password", {"KCG_SMTP_PASSWORD": password}) == password
    assert _logged(caplog, f"login as kcg with {password} failed") == "login as kcg with *** failed"


def test_a_secret_inside_a_longer_one_leaves_nothing_of_the_longer(caplog):
    install_log_filter()
    short = uuid.uuid4().hex[:8]
    long = short + uuid.uuid4().hex
    secret("graph_client_secret", {"KCG_GRAPH_CLIENT_SECRET": short})
    secret("dropbox_refresh_token", {"KCG_DROPBOX_REFRESH_TOKEN": long})
    assert _logged(caplog, f"token {long} and {short}") == "token *** and ***"


def test_a_value_too_short_for_a_credential_does_not_garble_the_log(caplog):
    install_log_filter()
    assert MIN_MASKED == 4
    secret("smtp_password", {"KCG_SMTP_PASSWORD": "a"})
    assert _logged(caplog, "the alert could not be sent by mail") == "the alert could not be sent by mail"
