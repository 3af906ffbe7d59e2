"""A session-level Postgres advisory lock: the last line of defence against two refreshes at once.

The holder labels its lock connection (`application_name`, e.g. "cm_pipeline refresh, dagster run
<id>"), so a second refresh that finds the lock taken names the run that holds it, not just a pid.
"""

from __future__ import annotations

from sqlalchemy.engine import Engine

from cm_pipeline.warehouse.connection import raw_connection

# pg_try_advisory_lock(int4, int4): ("CM", 1) = the chartmogul.customers refresh.
REFRESH_LOCK = (0x434D, 1)


class RefreshAlreadyRunning(RuntimeError):
    """Another process holds the warehouse refresh lock."""


class AdvisoryLock:
    """Holds pg_try_advisory_lock on a dedicated connection until released (or the process dies).

    Acquiring fails fast with RefreshAlreadyRunning naming the holder (its label and backend pid).
    """

    def __init__(
        self,
        engine: Engine,
        key: tuple[int, int] = REFRESH_LOCK,
        what: str = "warehouse refresh",
        holder: str | None = None,
    ):
        self._engine = engine
        self._key = key
        self._what = what
        self._holder = (holder or f"cm_pipeline {what}")[:63]  # Postgres keeps 63 bytes of it
        self._conn = None

    def acquire(self) -> None:
        conn = raw_connection(self._engine)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT set_config('application_name', %s, false)", (self._holder,))
                cur.execute("SELECT pg_try_advisory_lock(%s, %s)", self._key)
                if cur.fetchone()[0]:
                    self._conn = conn
                    return
                cur.execute(
                    "SELECT l.pid, a.application_name FROM pg_locks l"
                    " LEFT JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory'"
                    " AND l.granted AND l.classid = %s AND l.objid = %s AND l.objsubid = 2"
                    # advisory locks are per database: a holder in another database is not this one's
                    " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                    self._key,
                )
                holder = cur.fetchone()
        except BaseException:
            conn.close()
            raise
        conn.close()
        raise RefreshAlreadyRunning(self._message(holder))

    def _message(self, holder: tuple | None) -> str:
        if holder is None:
            who, end = "another session", "wait for it to finish and try again"
        else:
            pid, label = holder
            who = f"{label or 'an unlabelled session'} (Postgres backend pid {pid})"
            end = (
                "wait for it to finish, or end that run (Dagster UI: Runs, select it, Terminate); if no such"
                f" run is alive any more, end its session with SELECT pg_terminate_backend({pid})"
            )
        return (
            f"another {self._what} is running: {who} holds advisory lock {self._key} on the warehouse; {end}."
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
