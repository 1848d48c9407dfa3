"""Where models, adapters, runs and traces live on disk.

Layout under the store home (``~/.cache/roost`` or ``$ROOST_HOME``)::

    bases/NAME/       Hugging Face model folder (safetensors) + roost.json
    adapters/NAME/    PEFT adapter folder + roost.json
    runs/NAME/        training metrics, curves, checkpoints
    traces.db         every backend call (SQLite)

Every entry is written into ``.tmp/`` first and renamed into place only once
it is complete, so a crash or an error never leaves a half-written model that
looks usable.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from roost.errors import StoreError

logger = logging.getLogger(__name__)

Kind = Literal["base", "adapter"]
KINDS: tuple[Kind, ...] = ("base", "adapter")
META_FILE = "roost.json"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def validate_name(name: str) -> str:
    """Return ``name`` if it is a safe store name, else raise :class:`StoreError` saying why.

    A store name is one path component: letters, digits, ``.``, ``_`` and ``-``,
    starting with a letter or digit. Path separators, ``..``, absolute paths and
    URLs are refused so that a name can never point outside the store.
    """
    if not isinstance(name, str) or not name:
        raise StoreError("a store name must be a non-empty string")
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", name):
        raise StoreError(f"invalid store name '{name}': a URL is not a name; pass it as the SOURCE instead")
    if name.startswith("/") or re.match(r"^[A-Za-z]:[\\/]", name):
        raise StoreError(f"invalid store name '{name}': an absolute path is not a name")
    if "/" in name or "\\" in name:
        raise StoreError(f"invalid store name '{name}': it must not contain a path separator")
    if ".." in name:
        raise StoreError(f"invalid store name '{name}': it must not contain '..'")
    if not _NAME.match(name):
        raise StoreError(
            f"invalid store name '{name}': use letters, digits, '.', '_' and '-', starting with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class Entry:
    """One base or adapter in the store, as described by its roost.json."""

    name: str
    kind: Kind
    path: Path
    created: str
    size_bytes: int
    lineage: dict[str, Any] = field(default_factory=dict)

    @property
    def meta(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "created": self.created, "lineage": self.lineage}


class Store:
    """The folder tree under the store home. Cheap to create; touches the disk only when used."""

    def __init__(self, home: Path | str) -> None:
        self.home = Path(home).expanduser()

    @classmethod
    def from_settings(cls, settings: Any = None) -> Store:
        if settings is None:
            from roost.config import load_settings

            settings = load_settings()
        return cls(settings.home)

    # paths ---------------------------------------------------------------

    def dir_for(self, kind: Kind) -> Path:
        if kind not in KINDS:
            raise StoreError(f"unknown store kind '{kind}'; expected one of {', '.join(KINDS)}")
        return self.home / f"{kind}s"

    def path(self, kind: Kind, name: str) -> Path:
        return self.dir_for(kind) / validate_name(name)

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"

    @property
    def traces_db(self) -> Path:
        return self.home / "traces.db"

    # reading -------------------------------------------------------------

    def get(self, kind: Kind, name: str) -> Entry | None:
        """The complete entry ``name`` of ``kind``, or None when there is none."""
        folder = self.path(kind, name)
        meta_file = folder / META_FILE
        if not meta_file.is_file():
            return None
        try:
            meta = json.loads(meta_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise StoreError(f"{meta_file} is unreadable ({exc}); remove the folder and pull again") from None
        return Entry(
            name=name,
            kind=kind,
            path=folder,
            created=meta.get("created", ""),
            size_bytes=int(meta.get("size_bytes") or _folder_size(folder)),
            lineage=meta.get("lineage", {}),
        )

    def find(self, name: str) -> Entry | None:
        """Look ``name`` up among bases, then adapters."""
        for kind in KINDS:
            entry = self.get(kind, name)
            if entry is not None:
                return entry
        return None

    def list(self, kind: Kind | None = None) -> list[Entry]:
        """Every complete entry, bases first, each kind sorted by name."""
        entries: list[Entry] = []
        for k in KINDS if kind is None else (kind,):
            folder = self.dir_for(k)
            if not folder.is_dir():
                continue
            for child in sorted(folder.iterdir()):
                if child.is_dir() and _NAME.match(child.name):
                    entry = self.get(k, child.name)
                    if entry is not None:
                        entries.append(entry)
        return entries

    # writing -------------------------------------------------------------

    @contextmanager
    def writing(self, kind: Kind, name: str, lineage: dict[str, Any] | None = None,
                overwrite: bool = False) -> Iterator[Path]:
        """Yield an empty temporary folder; on success it becomes entry ``name`` in one rename.

        On any exception the temporary folder is removed and the store is as it was.
        ``lineage`` may be mutated by the caller inside the block (e.g. to add metrics).
        """
        final = self.path(kind, name)
        if final.exists() and not overwrite:
            raise StoreError(f"{kind} '{name}' already exists in {self.dir_for(kind)}; remove it first or pick a name")
        tmp_root = self.home / ".tmp"
        tmp_root.mkdir(parents=True, exist_ok=True)
        tmp = tmp_root / f"{kind}-{name}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        lineage = {} if lineage is None else lineage
        try:
            yield tmp
            meta = {
                "name": name,
                "kind": kind,
                "created": datetime.now(UTC).isoformat(timespec="seconds"),
                "size_bytes": _folder_size(tmp),
                "lineage": lineage,
            }
            (tmp / META_FILE).write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
            final.parent.mkdir(parents=True, exist_ok=True)
            if final.exists():
                trash = tmp_root / f"old-{name}-{uuid.uuid4().hex[:8]}"
                os.replace(final, trash)
                os.replace(tmp, final)
                shutil.rmtree(trash, ignore_errors=True)
            else:
                os.replace(tmp, final)
            logger.info("wrote %s '%s' to %s", kind, name, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def remove(self, name: str, kind: Kind | None = None) -> Entry:
        """Delete entry ``name`` (of ``kind``, else whichever exists) and return what it was."""
        entry = self.get(kind, name) if kind else self.find(name)
        if entry is None:
            raise StoreError(f"no model or adapter named '{name}' in {self.home}")
        tmp_root = self.home / ".tmp"
        tmp_root.mkdir(parents=True, exist_ok=True)
        trash = tmp_root / f"rm-{name}-{uuid.uuid4().hex[:8]}"
        os.replace(entry.path, trash)  # one rename: the entry disappears at once, even if the delete is slow
        shutil.rmtree(trash, ignore_errors=True)
        return entry


def _folder_size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
