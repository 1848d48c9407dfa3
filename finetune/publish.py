"""Putting a trained model in the store with its lineage, and hot-loading it into a running backend."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from finetune.base import Base
from finetune.config import TrainConfig
from finetune.data import Prepared
from roost.config import Settings
from roost.errors import StoreError
from roost.store import Store

logger = logging.getLogger(__name__)

CONFIG_FILE = "roost-finetune.json"


@dataclass
class Result:
    """What a finetune run produced."""

    name: str
    kind: str
    path: Path
    method: str
    base: str
    metrics: dict[str, float]
    run_dir: Path
    skipped: dict[str, int] = field(default_factory=dict)
    hot_loaded: bool = False
    backend_url: str | None = None

    def serve_hint(self) -> str:
        """How to use the result when no backend picked it up."""
        if self.kind == "base":
            return f"serve it as a base: `roost serve` with an alias whose base = \"{self.name}\""
        return (f"serve it: start `roost serve` and ask for model \"{self.name}\", or give an alias "
                f"adapter = \"{self.name}\" in roost.toml")


def lineage(base: Base, method: str, config: TrainConfig, data: Prepared, eval_data: Prepared | None,
            metrics: dict[str, float]) -> dict[str, Any]:
    """Everything needed to tell where a model came from and to train it again."""
    import peft
    import torch
    import transformers
    import trl

    return {
        "base": base.name,
        "parent_adapter": base.adapter,
        "method": method,
        "data": str(data.path),
        "data_sha256": data.sha256,
        "rows": len(data.rows),
        "skipped": dict(data.skipped),
        "eval_data_sha256": eval_data.sha256 if eval_data else None,
        "config": config.as_dict(),
        "metrics": metrics,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": {"trl": trl.__version__, "peft": peft.__version__, "transformers": transformers.__version__,
                     "torch": torch.__version__},
    }


def save_to_store(model: Any, tokenizer: Any, *, config: TrainConfig, record: dict[str, Any],
                  settings: Settings) -> tuple[str, Path]:
    """Write the adapter (or, with --full, the whole model) under ``config.name`` in one rename.

    Returns the store kind ("adapter" or "base") and the entry's folder.
    """
    store = Store(settings.home)
    kind = "base" if config.full else "adapter"
    with store.writing(kind, config.name, record, overwrite=config.overwrite) as out:
        if hasattr(model, "peft_config"):
            # DPO on an existing adapter adds a frozen "ref" copy of it; only the trained one is the result.
            model.save_pretrained(out, selected_adapters=["default"], safe_serialization=True)
        else:
            model.save_pretrained(out, safe_serialization=True)
        if config.full:
            tokenizer.save_pretrained(out)
        (out / CONFIG_FILE).write_text(json.dumps(config.as_dict(), indent=2, default=str), encoding="utf-8")
    return kind, store.path(kind, config.name)


def check_free(config: TrainConfig, settings: Settings) -> None:
    """Fail before training when the name is taken and --overwrite is not given."""
    store = Store(settings.home)
    kind = "base" if config.full else "adapter"
    if not config.overwrite and store.get(kind, config.name) is not None:
        raise StoreError(f"{kind} '{config.name}' already exists in the store; pick another --name or pass --overwrite")


def hot_load(name: str, path: Path, base: str, settings: Settings) -> bool:
    """POST the adapter to a running backend; False when none answers /health within a second."""
    import httpx

    url = settings.backend.base_url
    headers = {"Authorization": f"Bearer {settings.backend.api_key}"} if settings.backend.api_key else {}
    try:
        health = httpx.get(f"{url}/health", headers=headers, timeout=1.0)
    except httpx.HTTPError:
        return False
    if health.status_code != 200:
        return False
    body = {"lora_name": name, "lora_path": str(path), "base_model_name": base, "load_inplace": True}
    try:
        response = httpx.post(f"{url}/v1/load_lora_adapter", json=body, headers=headers, timeout=120.0)
    except httpx.HTTPError as exc:
        logger.warning("the backend at %s did not load adapter '%s': %s", url, name, exc)
        return False
    if response.status_code >= 400:
        logger.warning("the backend at %s refused adapter '%s': %s %s", url, name, response.status_code,
                       response.text[:200])
        return False
    return True


def conclude(model: Any, tokenizer: Any, *, base: Base, method: str, config: TrainConfig, data: Prepared,
             eval_data: Prepared | None, metrics: dict[str, float], run_dir: Path, settings: Settings) -> Result:
    """Store the result with its lineage, then hot-load it when a backend is running."""
    if config.full and config.dtype == "bf16":
        import torch

        model = model.to(torch.bfloat16)  # trained with fp32 master weights; served in bf16, half the disk
    record = lineage(base, method, config, data, eval_data, metrics)
    kind, path = save_to_store(model, tokenizer, config=config, record=record, settings=settings)
    result = Result(name=config.name, kind=kind, path=path, method=method, base=base.name, metrics=metrics,
                    run_dir=run_dir, skipped=dict(data.skipped))
    if config.hot_load and kind == "adapter" and method != "reward":
        result.hot_loaded = hot_load(config.name, path, base.name, settings)
        result.backend_url = settings.backend.base_url
    return result
