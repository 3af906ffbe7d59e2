"""SandboxServer: the sandbox in this process, served from a background thread."""

from __future__ import annotations

import os
import threading
from typing import Any

from cm_pipeline.sandbox.control import SandboxControl
from cm_pipeline.sandbox.faults import Knobs, validated_knobs
from cm_pipeline.sandbox.journal import StateFile
from cm_pipeline.sandbox.seed import shape
from cm_pipeline.sandbox.server import SandboxHTTPServer
from cm_pipeline.sandbox.store import Store


class SandboxServer:
    """A ChartMogul-compatible API on 127.0.0.1 (threaded).

    customers, seed, account ("uniform" or "realistic", see seed.py): what is seeded at start.
    state_file: a path; the changes of earlier starts with the same file (and seed, customers, account)
      are replayed after seeding, and each change is appended to it (see journal.py). None: no file.
    knobs (latency_ms, rate_limit_rps, legacy_page_fields, fault_*, ...): see cm_pipeline.sandbox.faults.
    """

    def __init__(
        self,
        customers: int = 50,
        seed: int = 1,
        api_key: str | None = None,
        port: int = 0,
        host: str = "127.0.0.1",
        account: str = "uniform",
        state_file: str | os.PathLike | None = None,
        **knobs: Any,
    ):
        self.customers = customers
        self.seed = seed
        self.account = shape(account).name
        self.state_file = state_file
        self.host = host
        self.port = port
        self._api_key = api_key
        self._knobs = validated_knobs(Knobs(), knobs)
        self.store: Store | None = None
        self.replayed = 0  # changes replayed from state_file at the last start
        self._journal: StateFile | None = None
        self._httpd: SandboxHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return (
            f"SandboxServer(customers={self.customers}, seed={self.seed}, account={self.account!r}, "
            f"port={self.port})"
        )

    def start(self) -> SandboxServer:
        if self._httpd is not None:
            return self
        self.store = Store(self.customers, self.seed, self.account)
        if self.state_file is not None:
            self._journal = StateFile(self.state_file, self.store, self.seed, self.customers)
            self.replayed = self._journal.replayed
        try:
            self._httpd = SandboxHTTPServer((self.host, self.port), self.store, self._knobs, self._api_key)
        except OSError:
            if self._journal is not None:
                self._journal.close()
                self._journal = None
            raise
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, name="cm-sandbox", daemon=True
        )
        self._thread.start()
        return self

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def control(self) -> SandboxControl:
        return SandboxControl(self.base_url)

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._journal is not None:
            self._journal.close()
            self._journal = None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
