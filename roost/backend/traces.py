"""Every chat and text completion the backend serves, recorded in SQLite.

The trace database lives at ``Store(home).traces_db``. The backend hands each
finished call to :meth:`TraceStore.record`, which only enqueues it: one writer
thread batches the inserts, so the event loop never waits on the disk. The
database runs in WAL mode so ``roost traces list`` (or finetune exporting traces)
reads while the backend writes.

Example:
    >>> from roost.backend.traces import TraceStore
    >>> for t in TraceStore(store.traces_db).list(caller="triage-agent", since="1h"):
    ...     print(t.model, t.output)
"""

from __future__ import annotations

import json
import logging
import queue
import re
import sqlite3
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from roost.errors import RoostError

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS traces (
    id TEXT PRIMARY KEY,
    time REAL NOT NULL,
    endpoint TEXT NOT NULL,
    model TEXT NOT NULL,
    base TEXT,
    adapter TEXT,
    caller TEXT,
    request TEXT NOT NULL,
    output TEXT,
    finish_reason TEXT,
    choices TEXT,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    latency_ms REAL,
    status INTEGER NOT NULL,
    error TEXT
);
CREATE INDEX IF NOT EXISTS traces_time ON traces (time);
CREATE INDEX IF NOT EXISTS traces_caller_time ON traces (caller, time);
CREATE INDEX IF NOT EXISTS traces_model_time ON traces (model, time);
"""
_COLUMNS = ("id", "time", "endpoint", "model", "base", "adapter", "caller", "request", "output", "finish_reason",
            "choices", "prompt_tokens", "completion_tokens", "latency_ms", "status", "error")
_STOP = object()


class TraceError(RoostError):
    """A trace query is malformed (a bad --since, a bad limit)."""


@dataclass
class Trace:
    """One served call.

    ``model`` is the name the client asked for (an alias or a store name); ``base``
    and ``adapter`` are what served it. ``request`` holds the messages or prompt,
    tools and sampling parameters; ``output`` and ``finish_reason`` are the first
    choice's, ``choices`` lists all of them when ``n > 1``.
    """

    endpoint: str
    model: str
    request: dict[str, Any]
    base: str | None = None
    adapter: str | None = None
    caller: str | None = None
    output: str | None = None
    finish_reason: str | None = None
    choices: list[dict[str, Any]] | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_ms: float | None = None
    status: int = 200
    error: str | None = None
    id: str = field(default_factory=lambda: f"trace-{uuid.uuid4().hex}")
    time: datetime = field(default_factory=lambda: datetime.now(UTC))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["time"] = self.time.isoformat()
        return out

    def _row(self) -> tuple[Any, ...]:
        values = {**asdict(self), "time": self.time.timestamp(), "request": json.dumps(self.request, default=str),
                  "choices": json.dumps(self.choices) if self.choices is not None else None}
        return tuple(values[c] for c in _COLUMNS)

    @classmethod
    def _from_row(cls, row: sqlite3.Row) -> Trace:
        values = dict(zip(_COLUMNS, row, strict=True))
        values["time"] = datetime.fromtimestamp(values["time"], UTC)
        values["request"] = json.loads(values["request"])
        values["choices"] = json.loads(values["choices"]) if values["choices"] else None
        return cls(**values)


class TraceStore:
    """The trace database at ``path``: record calls (from any thread), list and prune them."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._queue: queue.Queue[Any] = queue.Queue()
        self._writer: threading.Thread | None = None
        self._lock = threading.Lock()

    # writing ---------------------------------------------------------------

    def record(self, trace: Trace) -> None:
        """Enqueue ``trace`` for the writer thread; returns at once."""
        self._ensure_writer()
        self._queue.put(trace)

    def flush(self) -> None:
        """Block until every recorded trace is in the database."""
        if self._writer is not None:
            self._queue.join()

    def close(self) -> None:
        """Write what is queued and stop the writer thread (a later record starts it again)."""
        with self._lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            self._queue.put(_STOP)
            writer.join()

    def prune(self, older_than_days: float) -> int:
        """Delete traces older than ``older_than_days``; returns how many went."""
        if not self.path.exists():
            return 0
        cutoff = time.time() - older_than_days * 86400
        with self._connect() as conn:
            deleted = conn.execute("DELETE FROM traces WHERE time < ?", (cutoff,)).rowcount
        conn.close()
        if deleted:
            logger.info("removed %d traces older than %s days from %s", deleted, older_than_days, self.path)
        return deleted

    def _ensure_writer(self) -> None:
        with self._lock:
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_loop, name="roost-trace-writer", daemon=True)
                self._writer.start()

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a crash may lose the last traces, never corrupt
        conn.executescript(_SCHEMA)
        return conn

    def _write_loop(self) -> None:
        conn = self._connect()
        try:
            while True:
                batch = [self._queue.get()]
                while len(batch) < 256:  # batching: one commit for a burst of finished requests
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                traces = [t for t in batch if t is not _STOP]
                try:
                    if traces:
                        with conn:
                            conn.executemany(
                                f"INSERT OR REPLACE INTO traces ({', '.join(_COLUMNS)}) "
                                f"VALUES ({', '.join('?' * len(_COLUMNS))})",
                                [t._row() for t in traces],
                            )
                except sqlite3.Error:
                    logger.exception("could not write %d traces to %s", len(traces), self.path)
                finally:
                    for _ in batch:
                        self._queue.task_done()
                if len(traces) != len(batch):
                    return
        finally:
            conn.close()

    # reading ---------------------------------------------------------------

    def list(self, caller: str | None = None, since: datetime | str | None = None, model: str | None = None,
             limit: int | None = 50) -> list[Trace]:
        """The newest traces first, filtered by caller tag, start time and requested model.

        ``since`` is a datetime, or text that :func:`parse_since` reads (``"2h"``, ``"2025-06-01"``).
        """
        if limit is not None and limit < 1:
            raise TraceError(f"limit must be at least 1, got {limit}")
        if not self.path.exists():
            return []
        where, args = [], []
        if caller is not None:
            where.append("caller = ?")
            args.append(caller)
        if model is not None:
            where.append("model = ?")
            args.append(model)
        if since is not None:
            start = parse_since(since) if isinstance(since, str) else since
            if start.tzinfo is None:
                start = start.astimezone()
            where.append("time >= ?")
            args.append(start.timestamp())
        sql = f"SELECT {', '.join(_COLUMNS)} FROM traces"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY time DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        conn = self._connect()
        try:
            return [Trace._from_row(row) for row in conn.execute(sql, args)]
        finally:
            conn.close()

    def get(self, trace_id: str) -> Trace | None:
        if not self.path.exists():
            return None
        conn = self._connect()
        try:
            row = conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM traces WHERE id = ?", (trace_id,)).fetchone()
        finally:
            conn.close()
        return Trace._from_row(row) if row else None


_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """A start time from ``text``: relative (``30s``, ``10m``, ``2h``, ``1d``, ``1w``) or ISO 8601.

    An ISO time without a zone is local time.
    """
    match = _RELATIVE.match(text)
    if match:
        now = now or datetime.now(UTC)
        return now - timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise TraceError(
            f"cannot read the time '{text}': use a relative time like 10m, 2h, 1d or an ISO date/time "
            "like 2025-06-01 or 2025-06-01T14:30"
        ) from None
    return when if when.tzinfo else when.astimezone()
