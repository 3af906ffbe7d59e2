"""The state file (--state-file / state_file=): a second start with the same file and seed serves the state
the first left, after a clean stop or a SIGKILL, and goes on issuing the uuids an uninterrupted run would."""

from __future__ import annotations

import json
import os
import signal

import pytest

from cm_pipeline.sandbox import SandboxProcess, SandboxServer
from cm_pipeline.sandbox.journal import read
from cm_pipeline.sandbox.seed import DOCS_DATA_SOURCE, MERGED_TAG
from cm_pipeline_tests.sandbox.conftest import add_custom, create, patch, session, walk


def _changes(srv, http) -> list[str]:
    """One of every kind of change, through the API and the admin door; the uuids created."""
    ctl = srv.control
    made = create(srv, http, data_source_uuid=DOCS_DATA_SOURCE, external_id="kept_1", email="kept@example.com",
                  attributes={"tags": ["t1"], "custom": [{"type": "Integer", "key": "newKey", "value": 5}]})  # fmt: skip
    assert made.status_code == 201, made.text
    first = ctl.customers()[0]
    assert (
        patch(srv, http, first["uuid"], {"name": "Renamed", "attributes": {"tags": ["x"]}}).status_code == 200
    )
    r = add_custom(
        srv, http, {"email": "kept@example.com", "custom": [{"type": "String", "key": "other", "value": "v"}]}
    )
    assert r.status_code == 200
    admin = ctl.insert_customer(
        data_source_uuid="ds_admin_made", email="admin@example.com", tags=[MERGED_TAG]
    )
    ctl.modify_customer(admin["uuid"], mrr=700)
    ctl.delete_customer(ctl.customers()[1]["uuid"])
    second = create(srv, http, data_source_uuid=DOCS_DATA_SOURCE, external_id="kept_2")
    ctl.merge_customers(second.json()["uuid"], made.json()["uuid"])
    return [made.json()["uuid"], admin["uuid"], second.json()["uuid"]]


def _state(srv) -> tuple:
    ctl = srv.control
    return ctl.customers(), ctl.data_sources(), ctl.custom_attribute_definitions()


def test_a_second_start_serves_the_state_the_first_left(tmp_path):
    path = tmp_path / "sandbox.jsonl"
    with SandboxServer(customers=40, seed=9, state_file=path) as srv, session() as http:
        _changes(srv, http)
        before = _state(srv)
        walked = walk(http, srv.base_url, per_page=7, status="Active")[0]
    with SandboxServer(customers=40, seed=9, state_file=path) as again, session() as http:
        assert again.replayed > 5
        assert _state(again) == before
        assert walk(http, again.base_url, per_page=7, status="Active")[0] == walked, "indexes rebuilt too"
        assert "newKey" in again.control.custom_attribute_definitions()
    fresh = SandboxServer(customers=40, seed=9).start()
    try:
        assert _state(fresh) != before, "without the file, a start is the seed alone"
    finally:
        fresh.stop()


def test_uuids_go_on_as_in_an_uninterrupted_run(tmp_path):
    """After a restart the next customer gets the uuid an uninterrupted sandbox would have given it, never
    one issued before (not even a deleted customer's)."""

    def creates(srv, http, names):
        return [
            create(srv, http, data_source_uuid=DOCS_DATA_SOURCE, external_id=n).json()["uuid"] for n in names
        ]

    with SandboxServer(customers=5, seed=2) as srv, session() as http:
        straight = creates(srv, http, ["a", "b", "c", "d"])
    path = tmp_path / "state.jsonl"
    with SandboxServer(customers=5, seed=2, state_file=path) as srv, session() as http:
        first = creates(srv, http, ["a", "b"])
        srv.control.delete_customer(first[1])
    with SandboxServer(customers=5, seed=2, state_file=path) as srv, session() as http:
        assert srv.control.customer(first[1]) is None
        assert first + creates(srv, http, ["c", "d"]) == straight


def test_a_kill_9_loses_nothing_that_was_answered(tmp_path):
    path = tmp_path / "killed.jsonl"
    proc = SandboxProcess(customers=60, seed=4, state_file=path, account="realistic").start()
    try:
        with session() as http:
            made = _changes(proc, http)
        before = _state(proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc._proc.wait(10)
    finally:
        proc.stop()
    with SandboxProcess(customers=60, seed=4, state_file=path, account="realistic") as again:
        assert _state(again) == before
        assert again.control.customer(made[0])["attributes"]["custom"] == {"newKey": 5, "other": "v"}
        assert again.control.customer(made[2]) is None, "merged away"


def test_a_torn_last_line_is_dropped_and_cut_off(tmp_path):
    path = tmp_path / "torn.jsonl"
    with SandboxServer(customers=10, seed=1, state_file=path) as srv, session() as http:
        uuid = create(srv, http, data_source_uuid=DOCS_DATA_SOURCE, external_id="whole").json()["uuid"]
        before = _state(srv)
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"put": {"id": 99, "uuid": "cus_torn", "na')  # a kill mid-write
    with SandboxServer(customers=10, seed=1, state_file=path) as srv, session() as http:
        assert _state(srv) == before and srv.control.customer("cus_torn") is None
        assert path.read_bytes() == whole, "the torn line is cut off before anything is appended"
        create(srv, http, data_source_uuid=DOCS_DATA_SOURCE, external_id="after")
    records, _ = read(path)
    assert records[-1]["put"]["external_id"] == "after" and uuid in {
        r.get("put", {}).get("uuid") for r in records
    }


def test_a_bad_line_before_the_last_or_another_seed_refuses_to_start(tmp_path):
    path = tmp_path / "state.jsonl"
    with SandboxServer(customers=10, seed=1, state_file=path) as srv, session() as http:
        create(srv, http, data_source_uuid=DOCS_DATA_SOURCE, external_id="one")
    with pytest.raises(ValueError, match=r"written for seed 1, 10 customers, account uniform, not seed 2"):
        SandboxServer(customers=10, seed=2, state_file=path).start()
    with pytest.raises(ValueError, match="account realistic"):
        SandboxServer(customers=10, seed=1, account="realistic", state_file=path).start()
    lines = path.read_bytes().split(b"\n")
    path.write_bytes(b"\n".join([lines[0], b"{not json", *lines[1:]]))
    with pytest.raises(ValueError, match="line 2 is not a change record"):
        SandboxServer(customers=10, seed=1, state_file=path).start()


def test_journal_records_resulting_documents(tmp_path):
    path = tmp_path / "state.jsonl"
    with SandboxServer(customers=3, seed=1, state_file=path) as srv, session() as http:
        c = create(srv, http, data_source_uuid=DOCS_DATA_SOURCE, external_id="doc_1", name="Doc").json()
        patch(srv, http, c["uuid"], {"name": "Doc 2"})
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0] == {"cm_sandbox_journal": 1, "seed": 1, "customers": 3, "account": "uniform"}
    assert lines[1]["put"] == c and lines[2]["put"]["name"] == "Doc 2" and lines[2]["draws"] == 1


def test_cli_state_file_flag(tmp_path):
    from cm_pipeline.sandbox.__main__ import parse_args
    from cm_pipeline.sandbox.process import cli_args

    args = cli_args(5, 1, None, 0, "127.0.0.1", {}, state_file=tmp_path / "s.jsonl")
    assert parse_args(args).state_file == str(tmp_path / "s.jsonl")
    assert "--state-file" not in cli_args(5, 1, None, 0, "127.0.0.1", {})


def test_a_change_that_cannot_be_applied_names_it_and_the_cli_says_so(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "deeper" / "state.jsonl"
    with SandboxServer(customers=3, seed=1, state_file=path) as srv:
        srv.control.delete_customer(srv.control.customers()[0]["uuid"])
    path.write_bytes(path.read_bytes() + b'{"delete": "cus_not_there", "draws": 0}\n')
    with pytest.raises(ValueError, match=r"change 3 cannot be applied"):
        SandboxServer(customers=3, seed=1, state_file=path).start()
    cli = [sys.executable, "-m", "cm_pipeline.sandbox", "--customers", "3", "--state-file", str(path)]
    out = subprocess.run(cli, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.startswith("error: state file") and "change 3" in out.stderr


def test_one_running_sandbox_per_state_file(tmp_path):
    path = tmp_path / "state.jsonl"
    with SandboxServer(customers=3, seed=1, state_file=path):
        with pytest.raises(ValueError, match="in use by another running sandbox"):
            SandboxServer(customers=3, seed=1, state_file=path).start()
    with SandboxServer(customers=3, seed=1, state_file=path) as again:
        assert again.replayed == 0
