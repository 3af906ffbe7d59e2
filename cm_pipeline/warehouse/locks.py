"""A session-level Postgres advisory lock: the last line of defence against two refreshes at once."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from cm_pipeline.warehouse.connection import raw_connection

# pg_try_advisory_lock(int4, int4): ("CM", 1) = the chartmogul.customers refresh.
REFRESH_LOCK = (0x434D, 1)


class RefreshAlreadyRunning(RuntimeError):
    """Another process holds the warehouse refresh lock."""


class AdvisoryLock:
    """Holds pg_try_advisory_lock on a dedicated connection until released (or the process dies).

    Acquiring fails fast with RefreshAlreadyRunning naming the holder's backend pid.
    """

    def __init__(self, engine: Engine, key: tuple[int, int] = REFRESH_LOCK, what: str = "warehouse refresh"):
        self._engine = engine
        self._key = key
        self._what = what
        self._conn = None

    def acquire(self) -> None:
        conn = raw_connection(self._engine)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_try_advisory_lock(%s, %s)", self._key)
                if cur.fetchone()[0]:
                    self._conn = conn
                    return
                cur.execute(
                    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
                    " AND classid = %s AND objid = %s AND objsubid = 2",
                    self._key,
                )
                holder = cur.fetchone()
        except BaseException:
            conn.close()
            raise
        conn.close()
        who = f"Postgres backend pid {holder[0]}" if holder else "another session"
        raise RefreshAlreadyRunning(
            f"another {self._what} is running: {who} holds advisory lock {self._key} on the warehouse. "
            "Wait for it to finish (or terminate that run) and try again."
        )

    def release(self) -> None:
        if self._conn is None:
            return
        try:
            with self._conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock(%s, %s)", self._key)
        finally:
            self._conn.close()  # closing the session releases the lock in any case
            self._conn = None

    @property
    def held(self) -> bool:
        return self._conn is not None

    def __enter__(self) -> AdvisoryLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
