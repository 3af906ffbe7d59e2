"""The API key never leaves the client: not in errors, reprs, logs, exception chains or echoed params."""

from __future__ import annotations

import logging
import socket
import traceback

import pytest
import requests

from cm_pipeline.chartmogul.errors import ChartMogulError, TransportError, UnprocessableEntityError
from cm_pipeline_tests.chartmogul.conftest import KEY_FORMS, a_customer, drain
from cm_pipeline_tests.conftest import TEST_API_KEY

# ---------------------------------------------------------------------------------------- secrecy


def test_api_key_never_appears_in_errors_reprs_or_logs(make_client, ctl, caplog):
    caplog.set_level(logging.DEBUG)
    client = make_client(max_attempts=2)
    raised: list[BaseException] = []

    def capture(fn, *a, **kw):
        try:
            fn(*a, **kw)
        except ChartMogulError as exc:
            raised.append(exc)

    capture(client.retrieve_customer, "cus_missing")
    capture(client.create_customer, {"data_source_uuid": "ds_nope", "external_id": "k1"})
    capture(make_client(api_key=TEST_API_KEY + "x").list_customers_page)
    ctl.configure(fault_rate=1.0, fault_kinds=["html500", "drop", "503"])
    capture(client.list_customers_page)
    ctl.configure(fault_rate=0.0, latency_ms=400)
    capture(make_client(read_timeout=0.1, max_attempts=2).list_customers_page)
    ctl.configure(latency_ms=0)
    drain(ctl, ctl.stats()["requests"])
    assert len(raised) == 5
    texts = [repr(client), repr(client.limiter), str(client.stats), caplog.text]
    for exc in raised:
        texts += [
            str(exc),
            repr(exc),
            "".join(traceback.format_exception(exc)),
            str(exc.details),
            str(exc.__dict__),
        ]
    blob = "\n".join(texts)
    for form in KEY_FORMS:
        assert form not in blob
    assert "Authorization" not in blob and "Basic " not in blob


def exception_chain(exc: BaseException) -> list[BaseException]:
    """exc and every exception reachable from it through __cause__ and __context__."""
    found: list[BaseException] = []
    todo = [exc]
    while todo:
        e = todo.pop()
        if e is None or any(e is f for f in found):
            continue
        found.append(e)
        todo += [e.__cause__, e.__context__]
    return found


def test_transport_errors_keep_no_chain_to_the_request_and_its_auth_header(make_client, ctl, unanswered_port):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        refused = f"http://127.0.0.1:{s.getsockname()[1]}/v1"  # bound, not listening
        provokers = {
            "refused": make_client(base_url=refused, max_attempts=2).list_customers_page,
            "connect_timeout": make_client(
                base_url=f"http://127.0.0.1:{unanswered_port}/v1", connect_timeout=0.1, max_attempts=2
            ).list_customers_page,
        }
        raised: dict[str, TransportError] = {}
        for name, call in provokers.items():
            with pytest.raises(TransportError) as info:
                call()
            raised[name] = info.value
    ctl.configure(fault_rate=1.0, fault_kinds=["drop"])
    with pytest.raises(TransportError) as info:
        make_client(max_attempts=2).list_customers_page()
    raised["dropped"] = info.value
    ctl.configure(fault_rate=0.0, latency_ms=300)
    with pytest.raises(TransportError) as info:
        make_client(read_timeout=0.1, max_attempts=2).list_customers_page()
    raised["read_timeout"] = info.value
    ctl.configure(latency_ms=0)
    drain(ctl, ctl.stats()["requests"])

    kinds = {name: err.kind for name, err in raised.items()}
    assert kinds == {
        "refused": "connection",
        "connect_timeout": "connect_timeout",
        "dropped": "connection",
        "read_timeout": "timeout",
    }
    for name, err in raised.items():
        chain = exception_chain(err)
        assert chain == [err], f"{name}: {err!r} chains to {chain[1:]!r}"
        assert not any(isinstance(e, requests.exceptions.RequestException) for e in chain)
        text = "\n".join([str(err), repr(err), str(vars(err)), "".join(traceback.format_exception(err))])
        for form in KEY_FORMS:
            assert form not in text, name
        assert "Authorization" not in text


def test_key_echoed_in_an_error_param_and_message_is_scrubbed(client, ctl):
    # The sandbox echoes an invalid custom-attribute key as the param, and a bad value in the message.
    email = a_customer(ctl)["email"]
    with pytest.raises(UnprocessableEntityError) as info:
        client.add_custom_attributes(email, [{"type": "String", "key": TEST_API_KEY, "value": "v"}])
    err = info.value
    assert err.param == "***" and "***" in err.message
    token = KEY_FORMS[1]
    with pytest.raises(UnprocessableEntityError) as info2:
        client.add_custom_attributes(
            email, [{"type": "Integer", "key": "client_test_tok", "value": f"Basic {token}"}]
        )
    assert "Basic ***" in info2.value.message
    for e in (err, info2.value):
        text = "\n".join(
            [str(e), repr(e), str(e.details), str(vars(e)), "".join(traceback.format_exception(e))]
        )
        for form in KEY_FORMS:
            assert form not in text
