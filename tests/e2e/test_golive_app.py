"""Go-live through the shell: recorded by the first daily run or set
in meetings.yaml, shown as "före start"; real SQLite, Maildir, local archive."""

from __future__ import annotations

from datetime import date

from support.helpers import at, close, config_with, make_app, sent_by_key, shipped_config

from kcg_mail.services.daily import run_daily
from kcg_mail.services.status import go_live_line, meeting_rows


def test_first_daily_run_records_go_live_and_keeps_it(tmp_path):
    app = make_app(tmp_path)
    try:
        assert app.go_live() is None and "ingen körning än" in go_live_line(app)
        run_daily(app, at(date(2023, 6, 12)))
        assert app.go_live() == date(2023, 6, 12)
        run_daily(app, at(date(2023, 7, 17)))
        assert app.go_live() == date(2023, 6, 12), "a later run does not move it"
        keys = sorted(k.strip() for k in sent_by_key(tmp_path))
        coord = "bjorn@svenskastadskarnor.example.se"
        # the open meeting's date is the coordinator's: asked on go-live (its ten weeks had begun), reminded a
        # week later; the study trip's tentative date is asked about ten weeks before it
        assert keys == ["2023-08:brief_host:monica@stockholm.example.se",
                        f"2023-08:date_question:{coord}:set_meeting:n0", f"2023-08:date_question:{coord}:set_meeting:n1",
                        f"2023-10:date_question:{coord}:confirm_date:n0"]
        rows = {r["möte"].split()[0]: r["läge"] for r in meeting_rows(app, at(date(2023, 7, 17)))}
        assert [m for m, v in rows.items() if v == "före start"] == ["2023-01", "2023-02", "2023-03", "2023-04",
                                                                     "2023-05", "2023-06"]
    finally:
        close(app)


def test_go_live_in_meetings_yaml_wins(tmp_path):
    base = shipped_config()
    cfg = config_with(base, ["2023-01", "2023-02", "2023-03"])
    cfg = cfg.model_copy(update={"meetings": cfg.meetings.model_copy(update={"go_live": date(2023, 2, 8)})})
    app = make_app(tmp_path, cfg)
    try:
        report = run_daily(app, at(date(2023, 2, 8)))
        # February was held on 6 February, 2 working days before go-live: it still gets its template
        assert [(r.meeting_id, r.action) for r in report.results] == [("2023-02", "send_template")]
        assert app.state.get("go_live") is None, "the configured date is not overwritten by a recorded one"
        assert "meetings.yaml go_live" in go_live_line(app)
        assert {r["möte"].split()[0]: r["läge"] for r in meeting_rows(app, at(date(2023, 2, 8)))} == {
            "2023-01": "före start", "2023-02": "före start", "2023-03": "planerat"}
    finally:
        close(app)
