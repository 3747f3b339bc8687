"""SQLite under asyncio with one trip to the database thread per statement.

aiosqlite runs sqlite3 in a thread of its own; each of its calls is a trip from the event loop to that thread
and back. SQLAlchemy's stock adapter makes four per statement (open a cursor, execute, fetch, close). When
the loop is busy (thousands of polls answering at once), each trip waits for a whole loop iteration, tens or
hundreds of milliseconds, and an incident (a handful of statements and a commit) then took seconds to be
stored. This adapter runs the four steps as one function on the database thread: one trip per statement,
the same sqlite3 calls, the same SQLAlchemy dialect (``sqlite+aiosqlite``) and the same errors.
"""

from __future__ import annotations

import collections
import sqlite3
from collections.abc import Sequence
from typing import Any

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import AsyncAdapt_aiosqlite_connection, AsyncAdapt_aiosqlite_dbapi
from sqlalchemy.util import await_

Description = tuple[tuple[Any, ...], ...] | None


def _run(conn: sqlite3.Connection, operation: str, parameters: Any, many: bool
         ) -> tuple[Description, int, int | None, list[Any] | None, bool]:
    """On the database thread: the whole statement, its rows included, and whether a transaction is open."""
    cur = conn.cursor()
    try:
        if many:
            cur.executemany(operation, parameters)
        elif parameters is None:
            cur.execute(operation)
        else:
            cur.execute(operation, parameters)
        description = cur.description
        rows = cur.fetchall() if description else None
        return description, cur.rowcount, cur.lastrowid, rows, conn.in_transaction
    finally:
        cur.close()


class OneTripCursor:
    """The DB-API cursor SQLAlchemy drives, its statement run in one trip; results are buffered."""

    server_side = False

    __slots__ = (
        "_adapt_connection",
        "_connection",
        "_rows",
        "arraysize",
        "description",
        "lastrowid",
        "rowcount",
    )

    def __init__(self, adapt_connection: OneTripConnection) -> None:
        self._adapt_connection = adapt_connection
        self._connection: aiosqlite.Connection = adapt_connection._connection
        self._rows: collections.deque[Any] = collections.deque()
        self.description: Description = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self.arraysize = 1

    async def _trip(self, operation: str, parameters: Any, many: bool) -> None:
        adapt = self._adapt_connection
        async with adapt._execute_mutex:
            conn = self._connection._conn  # raises ValueError once the connection is closed
            adapt._in_transaction = True  # until the statement says otherwise (it may fail half-way)
            description, self.rowcount, self.lastrowid, rows, adapt._in_transaction = \
                await self._connection._execute(_run, conn, operation, parameters, many)
        self.description = description
        self._rows = collections.deque(rows) if rows else collections.deque()

    def execute(self, operation: str, parameters: Any = None) -> None:
        try:
            await_(self._trip(operation, parameters, False))
        except Exception as error:
            self._adapt_connection._handle_exception(error)

    def executemany(self, operation: str, seq_of_parameters: Sequence[Any]) -> None:
        try:
            await_(self._trip(operation, seq_of_parameters, True))
        except Exception as error:
            self._adapt_connection._handle_exception(error)

    async def _async_soft_close(self) -> None:
        """Nothing to close: the sqlite3 cursor was closed on the database thread."""

    def close(self) -> None:
        self._rows.clear()

    def setinputsizes(self, *inputsizes: Any) -> None:
        pass

    def nextset(self) -> None:
        self._rows.clear()

    def __enter__(self) -> OneTripCursor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __iter__(self) -> Any:
        while self._rows:
            yield self._rows.popleft()

    def fetchone(self) -> Any:
        return self._rows.popleft() if self._rows else None

    def fetchmany(self, size: int | None = None) -> list[Any]:
        rows = self._rows
        return [rows.popleft() for _ in range(min(size or self.arraysize, len(rows)))]

    def fetchall(self) -> list[Any]:
        out = list(self._rows)
        self._rows.clear()
        return out


class OneTripConnection(AsyncAdapt_aiosqlite_connection):
    """Commit and rollback make no trip when no transaction is open: sqlite3 opens one at the first write
    (a read-only block has none), and the pool rolls back every connection it gets back, even committed."""

    __slots__ = ("_in_transaction",)
    _cursor_cls = OneTripCursor  # type: ignore[assignment]

    def __init__(self, dbapi: Any, connection: aiosqlite.Connection) -> None:
        super().__init__(dbapi, connection)
        self._in_transaction = True  # unknown until the first statement: do what the stock adapter does

    def rollback(self) -> None:
        if self._in_transaction:
            super().rollback()
            self._in_transaction = False

    def commit(self) -> None:
        if self._in_transaction:
            super().commit()
            self._in_transaction = False


class OneTripDbapi(AsyncAdapt_aiosqlite_dbapi):
    """aiosqlite's DB-API adapter whose connections make one-trip cursors (``module=`` of the engine)."""

    def connect(self, *arg: Any, **kw: Any) -> OneTripConnection:
        stock = super().connect(*arg, **kw)
        return OneTripConnection(self, stock._connection)


def one_trip_dbapi() -> OneTripDbapi:
    return OneTripDbapi(aiosqlite, sqlite3)
