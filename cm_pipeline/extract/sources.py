"""GET /v1/data_sources, asked in the background as a run starts: the data sources a split walks."""

from __future__ import annotations

import threading


class DataSourcesCall:
    """One GET /v1/data_sources (of `system` only, when set) on its own thread.

    `result()` waits for it: (every data source uuid, "") or (None, why the call failed). A failure is an
    answer, not an error: the pass then walks by status alone.
    """

    def __init__(self, client, system: str | None = None):
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._callbacks: list = []
        self._sources: list[str] | None = None
        self._why = ""
        self._thread = threading.Thread(
            target=self._call, args=(client, system), name="cm-extract-data-sources", daemon=True
        )
        self._thread.start()

    def _call(self, client, system: str | None) -> None:
        try:
            records = client.list_data_sources(system=system)
            self._sources = sorted({r["uuid"] for r in records})
        except Exception as exc:  # an API error or anything else: never let the plan's helper sink the run
            self._why = f"{type(exc).__name__}: {exc}"
        finally:
            with self._lock:
                self._done.set()
                callbacks, self._callbacks = self._callbacks, []
            for callback in callbacks:
                callback()

    def when_done(self, callback) -> None:
        """Call `callback()` once the answer is in (at once, on this thread, if it already is)."""
        with self._lock:
            if not self._done.is_set():
                self._callbacks.append(callback)
                return
        callback()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def result(self, timeout: float | None = None) -> tuple[list[str] | None, str]:
        """(data source uuids, "") or (None, why not); (None, "still waiting") after `timeout` seconds."""
        if not self._done.wait(timeout):
            return None, "still waiting"
        return self._sources, self._why
