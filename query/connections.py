"""The async psycopg connections of the screening reads, a small pool checked at checkout.

`Connections` hands out autocommit, read-only connections set up for the screening statements
(`prefilter_sql.SCREENING_SESSION`, the statement timeout of the time budget) and keeps the
idle ones; `ended_by_server` tells, without a round trip, that the server has ended an idle
one, so a database blip costs no request once the server answers again.
"""

from __future__ import annotations

import asyncio
import select
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

from hwledger.query import prefilter_sql

CONNECT_TIMEOUT_SECONDS = 5


class Connections:
    """The async psycopg connections of the screening reads (no thread hop): autocommit, so a
    one-statement answer is one round trip; read-only; `prefilter_sql.SCREENING_SESSION` (UTC
    for the answer's timestamps, the planner's price of an index tuple); REPEATABLE READ for the
    transactions `exact` opens; each statement cut off after `statement_timeout_ms`. At most
    `size` at a time; an idle connection is checked when checked out (`ended_by_server`) and
    one that broke is dropped; a failed connect fails the request at once."""

    def __init__(self, url: str, size: int, statement_timeout_ms: int) -> None:
        self.url = url
        self.statement_timeout_ms = statement_timeout_ms
        self._idle: list[psycopg.AsyncConnection[Any]] = []
        self._slots = asyncio.Semaphore(size)

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        conn = await psycopg.AsyncConnection.connect(
            self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS)
        await conn.execute("SET default_transaction_read_only = on; "
                           + prefilter_sql.SCREENING_SESSION)
        await conn.execute("SELECT set_config('statement_timeout', %s, false)",
                           (str(self.statement_timeout_ms),))
        await conn.set_isolation_level(psycopg.IsolationLevel.REPEATABLE_READ)
        return conn

    async def _checkout(self) -> psycopg.AsyncConnection[Any]:
        """An idle connection the server has not ended (the others closed), else a new one."""
        while self._idle:
            conn = self._idle.pop()
            if not ended_by_server(conn):
                return conn
            await conn.close()
        return await self._connect()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        async with self._slots:
            conn = await self._checkout()
            try:
                yield conn
            finally:
                if conn.closed or conn.info.transaction_status != TransactionStatus.IDLE:
                    await conn.close()
                else:
                    self._idle.append(conn)

    async def close(self) -> None:
        while self._idle:
            await self._idle.pop().close()


def ended_by_server(conn: psycopg.AsyncConnection[Any]) -> bool:
    """Has the server ended this idle connection? An idle connection has nothing to read
    unless the server said goodbye (a terminated backend's FATAL error, a restart's closed
    socket), so a readable socket means it is gone; the check costs no round trip."""
    if conn.closed:
        return True
    readable, _, _ = select.select([conn.fileno()], [], [], 0)
    return bool(readable)

