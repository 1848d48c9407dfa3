from __future__ import annotations

import json
from pathlib import Path

import pytest

from roost.errors import StoreError
from roost.store import Store, validate_name


@pytest.mark.parametrize("name", ["smollm2-135m-instruct", "writer.v1", "A_b-3"])
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("../x", "path separator"),
        ("a/b", "path separator"),
        ("a\\b", "path separator"),
        ("..", "'..'"),
        ("x..y", "'..'"),
        ("/etc/passwd", "absolute path"),
        ("https://example.com/m", "URL"),
        ("", "non-empty"),
        (".hidden", "letters, digits"),
        ("has space", "letters, digits"),
    ],
)
def test_invalid_names_are_refused_with_reason(name: str, why: str) -> None:
    with pytest.raises(StoreError, match=why):
        validate_name(name)


def test_writing_is_atomic_and_records_lineage(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    lineage = {"base": "b"}
    with store.writing("adapter", "one", lineage) as out:
        (out / "weights.safetensors").write_bytes(b"x" * 10)
        assert store.get("adapter", "one") is None  # invisible until complete
        lineage["metrics"] = {"loss": 1.5}
    entry = store.get("adapter", "one")
    assert entry is not None and entry.kind == "adapter"
    assert entry.lineage == {"base": "b", "metrics": {"loss": 1.5}}
    assert entry.size_bytes == 10
    meta = json.loads((entry.path / "roost.json").read_text())
    assert meta["name"] == "one" and meta["created"]
    assert [e.name for e in store.list()] == ["one"]


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    with pytest.raises(RuntimeError):
        with store.writing("base", "broken") as out:
            (out / "model.safetensors").write_bytes(b"half")
            raise RuntimeError("conversion failed")
    assert store.list() == []
    assert not store.path("base", "broken").exists()
    assert list((tmp_path / "s" / ".tmp").iterdir()) == []


def test_existing_entry_is_not_overwritten_by_default(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    with store.writing("base", "m") as out:
        (out / "a").write_text("1")
    with pytest.raises(StoreError, match="already exists"):
        with store.writing("base", "m"):
            pass
    with store.writing("base", "m", overwrite=True) as out:
        (out / "b").write_text("2")
    assert sorted(p.name for p in store.path("base", "m").iterdir()) == ["b", "roost.json"]


def test_remove_and_find(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    with store.writing("base", "m") as out:
        (out / "a").write_text("1")
    assert store.find("m").kind == "base"
    removed = store.remove("m")
    assert removed.name == "m" and store.find("m") is None
    with pytest.raises(StoreError, match="no model or adapter named 'm'"):
        store.remove("m")


def test_half_written_folder_without_metadata_is_not_listed(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    (store.dir_for("base") / "ghost").mkdir(parents=True)
    assert store.list() == [] and store.get("base", "ghost") is None
