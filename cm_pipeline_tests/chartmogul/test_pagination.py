"""The cursor walker with no network: it follows cursors, ignores deprecated keys, and never loops."""

from __future__ import annotations

import pytest

from cm_pipeline.chartmogul.errors import PaginationError
from cm_pipeline.chartmogul.pagination import MAX_CONSECUTIVE_EMPTY_PAGES, CursorWalker, page_from_body


class ScriptedAPI:
    """fetch(cursor) answering from a dict {request_cursor: body}, recording every call."""

    def __init__(self, pages: dict):
        self.pages = pages
        self.calls: list = []

    def __call__(self, cursor):
        self.calls.append(cursor)
        if len(self.calls) > 1000:
            raise AssertionError("walker is looping")
        return self.pages[cursor]


def entries(*ids):
    return [{"uuid": f"cus_{i}"} for i in ids]


def test_walks_all_pages_and_ignores_deprecated_keys():
    api = ScriptedAPI(
        {
            None: {
                "entries": entries(1, 2),
                "cursor": "c1",
                "has_more": True,
                "page": 1,
                "per_page": 2,
                "current_page": 1,
                "total_pages": 99,
            },
            "c1": {"entries": entries(3, 4), "cursor": "c2", "has_more": True},
            "c2": {"entries": entries(5), "cursor": None, "has_more": False},
        }
    )
    pages = list(CursorWalker(api))
    assert [p.number for p in pages] == [1, 2, 3]
    assert [p.request_cursor for p in pages] == [None, "c1", "c2"]
    assert [p.cursor for p in pages] == ["c1", "c2", None]
    assert [e["uuid"] for p in pages for e in p.entries] == [f"cus_{i}" for i in range(1, 6)]
    assert api.calls == [None, "c1", "c2"]


def test_resumes_from_a_checkpointed_cursor():
    api = ScriptedAPI({"c1": {"entries": entries(3), "cursor": "c2", "has_more": False}})
    pages = list(CursorWalker(api, start_cursor="c1"))
    assert len(pages) == 1 and pages[0].request_cursor == "c1" and pages[0].number == 1


def test_last_page_may_carry_a_cursor():
    api = ScriptedAPI({None: {"entries": entries(1), "cursor": "end", "has_more": False}})
    assert [p.cursor for p in CursorWalker(api)] == ["end"]


def test_repeated_cursor_fails_loudly_without_refetching():
    api = ScriptedAPI(
        {
            None: {"entries": entries(1), "cursor": "a", "has_more": True},
            "a": {"entries": entries(2), "cursor": "b", "has_more": True},
            "b": {"entries": entries(3), "cursor": "a", "has_more": True},
        }
    )
    walker = iter(CursorWalker(api))
    assert next(walker).number == 1
    assert next(walker).number == 2
    with pytest.raises(PaginationError, match="cursor 'a' was already used"):
        next(walker)
    assert api.calls == [None, "a", "b"]


def test_cursor_equal_to_request_cursor_fails():
    api = ScriptedAPI({"s": {"entries": entries(1), "cursor": "s", "has_more": True}})
    with pytest.raises(PaginationError, match="returned the cursor it was given"):
        list(CursorWalker(api, start_cursor="s"))


def test_start_cursor_coming_back_later_fails():
    api = ScriptedAPI(
        {
            "s": {"entries": entries(1), "cursor": "t", "has_more": True},
            "t": {"entries": entries(2), "cursor": "s", "has_more": True},
        }
    )
    with pytest.raises(PaginationError, match="already used"):
        list(CursorWalker(api, start_cursor="s"))
    assert api.calls == ["s", "t"]


@pytest.mark.parametrize("cursor", [None, ""])
def test_has_more_without_cursor_fails(cursor):
    api = ScriptedAPI({None: {"entries": entries(1), "cursor": cursor, "has_more": True}})
    with pytest.raises(PaginationError, match="has_more is true but no cursor"):
        list(CursorWalker(api))
    assert api.calls == [None]


def test_endless_empty_pages_are_treated_as_a_loop():
    pages = {None: {"entries": [], "cursor": "e0", "has_more": True}}
    for i in range(200):
        pages[f"e{i}"] = {"entries": [], "cursor": f"e{i + 1}", "has_more": True}
    api = ScriptedAPI(pages)
    with pytest.raises(PaginationError, match="consecutive empty pages"):
        list(CursorWalker(api))
    assert len(api.calls) == MAX_CONSECUTIVE_EMPTY_PAGES


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ([], "expected a JSON object"),
        ({"cursor": None, "has_more": False}, "'entries' must be a list"),
        ({}, r"no 'entries' \(an empty object\)"),  # what the client makes of an empty 2xx body
        ({"cursor": None, "has_more": False}, r"no 'entries' \(keys: cursor, has_more\)"),
        ({"entries": None, "has_more": False}, "'entries' must be a list, got NoneType"),
        ({"entries": [1], "has_more": False}, r"entries\[0\] is not an object"),
        ({"entries": [], "has_more": "yes"}, "'has_more' must be a boolean"),
        ({"entries": [], "has_more": True, "cursor": 12}, "'cursor' must be a string"),
    ],
)
def test_malformed_pages_are_rejected(body, match):
    with pytest.raises(PaginationError, match=match):
        page_from_body(body, request_cursor=None, number=1)


def test_missing_has_more_means_last_page():
    page = page_from_body({"entries": []}, request_cursor=None, number=1)
    assert page.has_more is False and page.cursor is None


def test_first_page_keeps_the_deprecated_counts_when_they_are_integers():
    body = {"entries": [], "has_more": True, "cursor": "c1", "per_page": 1, "total_pages": 4373}
    page = page_from_body(body, request_cursor=None, number=1)
    assert (page.total_pages, page.per_page) == (4373, 1)
    for odd in (None, "12", -1, True, 1.5):
        page = page_from_body(
            {"entries": [], "total_pages": odd, "per_page": odd}, request_cursor=None, number=1
        )
        assert (page.total_pages, page.per_page) == (None, None), odd
    later = page_from_body({"entries": [], "has_more": False}, request_cursor="c1", number=2)
    assert later.total_pages is None and later.per_page is None
