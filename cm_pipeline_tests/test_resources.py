"""The ChartMogul resources keep the API key out of repr()/str(), out of events, and out of run storage:
client limits are set in run config without restating the key."""

from __future__ import annotations

import base64
import zlib

import dagster as dg
import sqlalchemy as sa

from cm_pipeline.definitions import build_defs
from cm_pipeline.resources import ChartMogulAccess, ChartMogulResource

KEY = "cm-resource-secret-5d1e"
FORMS = (KEY, base64.b64encode(f"{KEY}:".encode()).decode(), base64.b64encode(KEY.encode()).decode())


def shown(*objects) -> str:
    return "\n".join(f"{o!r}\n{o!s}" for o in objects)


def assert_hidden(text: str) -> None:
    for form in FORMS:
        assert form not in text


def readable(value) -> str:
    """A stored value as text: compressed blobs (Dagster's snapshots) unpacked."""
    if isinstance(value, bytes | memoryview):
        raw = bytes(value)
        try:
            raw = zlib.decompress(raw)
        except zlib.error:
            pass
        return raw.decode("utf-8", "replace")
    return str(value)


def resource(api_key, **limits) -> ChartMogulResource:
    return ChartMogulResource(
        access=ChartMogulAccess(api_key=api_key, base_url="http://127.0.0.1:9/v1"), **limits
    )


def test_literal_key_is_absent_from_the_resource_and_client_reprs():
    literal = resource(KEY, max_connections=4)
    with literal.get_client() as client:
        text = shown(literal, literal.access, client)
    assert_hidden(text)
    assert literal.access.api_key == KEY  # hidden from repr, still the value the client is built with
    assert "max_connections=4" in text and "127.0.0.1:9" in text  # the reprs still say something


def test_key_resolved_from_env_is_absent_inside_a_run(monkeypatch):
    monkeypatch.setenv("CHARTMOGUL_API_KEY", KEY)
    seen: dict = {}

    @dg.asset
    def peek(chartmogul: ChartMogulResource) -> None:
        """Records what the resolved resource and its client show."""
        seen["key"] = chartmogul.access.api_key
        with chartmogul.get_client() as client:
            seen["text"] = shown(chartmogul, chartmogul.access, client)

    for declared in (resource(dg.EnvVar("CHARTMOGUL_API_KEY")), resource(KEY)):
        seen.clear()
        result = dg.materialize([peek], resources={"chartmogul": declared})
        assert result.success
        assert seen["key"] == KEY  # the run really had the key
        assert_hidden(seen["text"] + shown(declared))
        assert_hidden("\n".join(str(event) for event in result.all_events))


def test_limits_change_in_run_config_and_run_storage_never_holds_the_key(monkeypatch, fresh_db):
    """A run with changed client limits (as the Launchpad sends them) needs no key in its config; every
    table of a Postgres-backed instance is then searched for the key in all its forms."""
    monkeypatch.setenv("CHARTMOGUL_API_KEY", KEY)
    seen: dict = {}

    @dg.op
    def peek_limits(chartmogul: ChartMogulResource) -> None:
        """Records the limits and key the run resolved."""
        seen.update(rps=chartmogul.max_requests_per_second, key=chartmogul.access.api_key)

    @dg.job
    def limits_job():
        peek_limits()

    defs = dg.Definitions(jobs=[limits_job], resources={"chartmogul": build_defs({}).resources["chartmogul"]})
    run_config = {"resources": {"chartmogul": {"config": {"max_requests_per_second": 12.5}}}}
    storage = {"storage": {"postgres": {"postgres_url": fresh_db}}}
    with dg.instance_for_test(overrides=storage) as instance:
        result = defs.resolve_job_def("limits_job").execute_in_process(
            run_config=run_config, instance=instance
        )
    assert result.success and seen == {"rps": 12.5, "key": KEY}
    engine = sa.create_engine(fresh_db)
    try:
        with engine.connect() as conn:
            tables = conn.execute(
                sa.text(
                    "SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema = 'public'"
                )
            ).all()
            dumped = "\n".join(
                readable(value)
                for schema, table in tables
                for row in conn.execute(sa.text(f'SELECT * FROM "{schema}"."{table}"'))
                for value in row
            )
    finally:
        engine.dispose()
    assert "12.5" in dumped  # the run and its config are in run storage...
    assert_hidden(dumped)  # ...and the key is nowhere in it
