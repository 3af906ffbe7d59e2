"""The deprecated first-page fields (page, per_page, current_page, total_pages) as a knob: on by default,
off from the start (kwarg and CLI flag) or switched while the sandbox runs."""

from __future__ import annotations

import pytest

from cm_pipeline.sandbox import SandboxControlError, SandboxProcess, SandboxServer
from cm_pipeline.sandbox.__main__ import parse_args
from cm_pipeline.sandbox.process import cli_args
from cm_pipeline_tests.sandbox.conftest import session, walk

DEPRECATED = {"page", "per_page", "current_page", "total_pages"}
BARE = {"entries", "cursor", "has_more"}


def test_off_from_the_start_no_page_carries_them():
    with SandboxServer(customers=120, seed=2, legacy_page_fields=False) as srv, session() as http:
        entries, pages = walk(http, srv.base_url, per_page=50)
        assert len(entries) == 120 and len(pages) == 3
        assert all(set(p) == BARE for p in pages)
        for filters in (
            {"status": "Active"},
            {"system": "Stripe"},
            {"data_source_uuid": entries[0]["data_source_uuid"]},
        ):
            _, pages = walk(http, srv.base_url, per_page=10, **filters)
            assert all(set(p) == BARE for p in pages), filters
        assert srv.control.config()["legacy_page_fields"] is False


def test_switched_at_run_time(fresh_sandbox, http):
    ctl = fresh_sandbox.control
    assert ctl.config()["legacy_page_fields"] is True
    first = http.get(f"{fresh_sandbox.base_url}/customers", params={"per_page": 7}).json()
    assert DEPRECATED <= set(first) and first["total_pages"] == 5
    assert ctl.configure(legacy_page_fields=False)["legacy_page_fields"] is False
    bare = http.get(f"{fresh_sandbox.base_url}/customers", params={"per_page": 7}).json()
    assert set(bare) == BARE and bare["entries"] == first["entries"] and bare["cursor"] == first["cursor"]
    ctl.configure(legacy_page_fields=True)
    assert DEPRECATED <= set(http.get(f"{fresh_sandbox.base_url}/customers").json())
    with pytest.raises(SandboxControlError) as exc:
        ctl.configure(legacy_page_fields="off")
    assert exc.value.status == 400 and "legacy_page_fields" in exc.value.body["error"]


def test_external_id_lookups_never_carry_them(fresh_sandbox, http):
    ext = fresh_sandbox.control.customers()[0]["external_id"]
    for on in (True, False):
        fresh_sandbox.control.configure(legacy_page_fields=on)
        body = http.get(f"{fresh_sandbox.base_url}/customers", params={"external_id": ext}).json()
        assert set(body) == BARE


def test_cli_flag_and_process_kwarg():
    assert parse_args([]).legacy_page_fields == "on"
    args = cli_args(1, 1, None, 0, "127.0.0.1", {"legacy_page_fields": False}, account="realistic")
    assert args[args.index("--legacy-page-fields") + 1] == "off"
    assert args[args.index("--account") + 1] == "realistic"
    parsed = parse_args(args)
    assert parsed.legacy_page_fields == "off" and parsed.account == "realistic" and parsed.state_file is None
    with pytest.raises(SystemExit):
        parse_args(["--legacy-page-fields", "maybe"])
    with SandboxProcess(customers=20, seed=1, legacy_page_fields=False, account="realistic") as proc:
        r = session().get(f"{proc.base_url}/customers", params={"per_page": 5})
        assert set(r.json()) == BARE and proc.control.config()["legacy_page_fields"] is False
        assert "Stripe (test mode)" in {d["name"] for d in proc.control.data_sources()}


def test_help_names_the_new_flags(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    text = capsys.readouterr().out
    for flag in ("--account {uniform,realistic}", "--state-file PATH", "--legacy-page-fields {on,off}"):
        assert flag in text, flag
