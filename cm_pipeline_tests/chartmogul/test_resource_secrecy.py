"""ChartMogulResource keeps the API key out of repr()/str(), as constructed and once Dagster resolves it."""

from __future__ import annotations

import base64

import dagster as dg

from cm_pipeline.resources import ChartMogulResource

KEY = "cm-resource-secret-5d1e"
FORMS = (KEY, base64.b64encode(f"{KEY}:".encode()).decode())


def shown(*objects) -> str:
    return "\n".join(f"{o!r}\n{o!s}" for o in objects)


def assert_hidden(text: str) -> None:
    for form in FORMS:
        assert form not in text


def test_literal_key_is_absent_from_the_resource_and_client_reprs():
    resource = ChartMogulResource(api_key=KEY, base_url="http://127.0.0.1:9/v1", max_connections=4)
    with resource.get_client() as client:
        text = shown(resource, client)
    assert_hidden(text)
    assert resource.api_key == KEY  # hidden from repr, still the value the client is built with
    assert "max_connections=4" in text and "127.0.0.1:9" in text  # the reprs still say something


def test_key_resolved_from_env_is_absent_inside_a_run(monkeypatch):
    monkeypatch.setenv("CHARTMOGUL_API_KEY", KEY)
    seen: dict = {}

    @dg.asset
    def peek(chartmogul: ChartMogulResource) -> None:
        """Records what the resolved resource and its client show."""
        seen["key"] = chartmogul.api_key
        with chartmogul.get_client() as client:
            seen["text"] = shown(chartmogul, client)

    declared = ChartMogulResource(api_key=dg.EnvVar("CHARTMOGUL_API_KEY"), base_url="http://127.0.0.1:9/v1")
    literal = ChartMogulResource(api_key=KEY, base_url="http://127.0.0.1:9/v1")
    for resource in (declared, literal):
        seen.clear()
        result = dg.materialize([peek], resources={"chartmogul": resource})
        assert result.success
        assert seen["key"] == KEY  # the run really had the key
        assert_hidden(seen["text"] + shown(resource))
        assert_hidden("\n".join(str(event) for event in result.all_events))
