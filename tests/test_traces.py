"""The trace store: recording from many threads, queries, retention, and `roost traces list`."""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from roost.backend.app import create_app
from roost.backend.traces import Trace, TraceError, TraceStore, parse_since
from roost.cli import app as cli
from roost.config import load_settings
from roost.store import Store
from tests.fakes import EchoEngine
from tests.servers import in_process


def trace(model: str = "default", caller: str | None = None, age: timedelta = timedelta(0), **fields) -> Trace:
    return Trace(endpoint="/v1/chat/completions", model=model, caller=caller,
                 request={"messages": [{"role": "user", "content": "hi"}], "params": {"temperature": 0}},
                 output=fields.pop("output", "hello"), finish_reason="stop", prompt_tokens=5, completion_tokens=2,
                 latency_ms=12.5, time=datetime.now(UTC) - age, **fields)


def test_recorded_traces_round_trip(tmp_path: Path):
    store = TraceStore(tmp_path / "traces.db")
    original = trace(caller="agent-a", base="smollm2", adapter="writer-v1",
                     choices=[{"text": "hello", "finish_reason": "stop"}, {"text": "hey", "finish_reason": "length"}])
    store.record(original)
    store.flush()
    [loaded] = store.list()
    assert loaded == original
    assert store.get(original.id) == original
    assert store.get("trace-missing") is None
    mode = sqlite3.connect(tmp_path / "traces.db").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    store.close()


def test_many_threads_record_without_losing_any(tmp_path: Path):
    store = TraceStore(tmp_path / "traces.db")

    def work(worker: int) -> None:
        for i in range(50):
            store.record(trace(caller=f"w{worker}", output=str(i)))

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.close()
    assert len(store.list(limit=None)) == 200
    assert sorted(int(t.output) for t in store.list(caller="w2", limit=None)) == list(range(50))


def test_list_filters_by_caller_model_and_time_newest_first(tmp_path: Path):
    store = TraceStore(tmp_path / "traces.db")
    for t in (trace("default", "a", timedelta(hours=3)), trace("writer", "a", timedelta(minutes=30)),
              trace("default", "b", timedelta(minutes=5)), trace("default", "a", timedelta(minutes=1))):
        store.record(t)
    store.close()
    assert [t.caller for t in store.list()] == ["a", "b", "a", "a"]
    assert [t.model for t in store.list(caller="a")] == ["default", "writer", "default"]
    assert [t.caller for t in store.list(model="default", since="1h")] == ["a", "b"]
    assert len(store.list(since=datetime.now(UTC) - timedelta(minutes=10))) == 2
    assert len(store.list(limit=1)) == 1
    assert store.list(caller="nobody") == []
    with pytest.raises(TraceError, match="limit must be at least 1"):
        store.list(limit=0)


def test_listing_a_missing_database_creates_nothing(tmp_path: Path):
    store = TraceStore(tmp_path / "none" / "traces.db")
    assert store.list() == []
    assert store.prune(1) == 0
    assert not (tmp_path / "none").exists()


def test_prune_removes_only_old_traces(tmp_path: Path):
    store = TraceStore(tmp_path / "traces.db")
    store.record(trace(caller="old", age=timedelta(days=40)))
    store.record(trace(caller="new", age=timedelta(days=2)))
    store.close()
    assert store.prune(30) == 1
    assert [t.caller for t in store.list()] == ["new"]


def test_parse_since_reads_relative_and_iso_times():
    now = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    assert parse_since("10m", now) == now - timedelta(minutes=10)
    assert parse_since("2h", now) == now - timedelta(hours=2)
    assert parse_since("1d", now) == now - timedelta(days=1)
    assert parse_since("1w", now) == now - timedelta(weeks=1)
    assert parse_since("30s", now) == now - timedelta(seconds=30)
    assert parse_since("2025-05-30T08:00:00+00:00") == datetime(2025, 5, 30, 8, tzinfo=UTC)
    local = parse_since("2025-05-30")
    assert local.tzinfo is not None and local.replace(tzinfo=None) == datetime(2025, 5, 30)
    with pytest.raises(TraceError, match="cannot read the time 'yesterday'"):
        parse_since("yesterday")


@pytest.mark.asyncio
async def test_the_app_prunes_by_the_retention_setting_at_startup(tokenizer, roost_home: Path):
    (Path.cwd() / "roost.toml").write_text("[backend]\ntrace_retention_days = 7\n")
    settings = load_settings()
    store = TraceStore(Store(settings.home).traces_db)
    store.record(trace(caller="stale", age=timedelta(days=8)))
    store.record(trace(caller="fresh", age=timedelta(days=6)))
    store.close()
    app = create_app(EchoEngine(tokenizer), settings, traces=store)
    async with in_process(app) as (client, _):
        await client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}],
                                             max_tokens=1, user="now")
    assert [t.caller for t in store.list()] == ["now", "fresh"]


def test_roost_traces_list_shows_a_table_and_json(roost_home: Path):
    store = TraceStore(Store(roost_home).traces_db)
    store.record(trace("writer", "triage-agent", output="Paris is the capital."))
    store.record(trace("default", "other", timedelta(days=2), output="unrelated"))
    store.close()
    runner = CliRunner()

    table = runner.invoke(cli, ["traces", "list", "--caller", "triage-agent"], env={"COLUMNS": "200"})
    assert table.exit_code == 0, table.output
    assert "triage-agent" in table.output and "Paris is the capital." in table.output
    assert "unrelated" not in table.output

    recent = runner.invoke(cli, ["traces", "list", "--since", "1d", "--json"])
    rows = [json.loads(line) for line in recent.output.splitlines()]
    assert [r["caller"] for r in rows] == ["triage-agent"]
    assert rows[0]["request"]["messages"][0]["content"] == "hi"

    by_model = runner.invoke(cli, ["traces", "list", "--model", "default", "--json", "--limit", "5"])
    assert [json.loads(line)["output"] for line in by_model.output.splitlines()] == ["unrelated"]

    empty = runner.invoke(cli, ["traces", "list", "--caller", "nobody"])
    assert empty.exit_code == 0 and "No traces match" in empty.output

    bad = runner.invoke(cli, ["traces", "list", "--since", "last tuesday"])
    assert bad.exit_code == 1
    assert "cannot read the time 'last tuesday'" in bad.output
