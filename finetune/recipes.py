"""Recipes: several methods in a row on one task. ``sft-then-grpo`` is how small models become reasoners.

1. SFT on worked answers teaches the format (a calculation, then ``<answer>N</answer>``).
2. GRPO on the same problems, rewarded for the right number and the format, sharpens the answers.
3. The dev set is scored greedily before, after SFT and after GRPO.

Example:
    >>> import finetune
    >>> report = finetune.sft_then_grpo(name="arith-reasoner", grpo_steps=20)
    >>> report.accuracy   # {"base": ..., "sft": ..., "grpo": ...}
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finetune.base import Base, load_tokenizer, resolve_base
from finetune.config import RecipeConfig, resolve_config
from finetune.grpo import grpo
from finetune.publish import Result
from finetune.sft import sft
from finetune.tasks import arithmetic
from roost.config import Settings, load_settings
from roost.prompts import encode, render_chat

logger = logging.getLogger(__name__)

RECIPES = ("sft-then-grpo",)


@dataclass
class RecipeReport:
    """The stages' results and the dev accuracy at each point (``base``, ``sft``, ``grpo``)."""

    stages: dict[str, Result]
    accuracy: dict[str, float] = field(default_factory=dict)
    dev_rows: int = 0

    @property
    def final(self) -> Result:
        return self.stages["grpo"]


def sft_then_grpo(config: RecipeConfig | None = None, *, config_file: Path | str | None = None,
                  settings: Settings | None = None, callbacks: list[Any] | None = None,
                  **fields: Any) -> RecipeReport:
    """SFT then GRPO on the arithmetic task shipped with roost; dev accuracy before and after.

    The SFT adapter is stored as ``NAME-sft``; GRPO continues training it and stores ``NAME``.
    """
    config = resolve_config(RecipeConfig, config, config_file, fields)
    settings = settings or load_settings()
    train = arithmetic.data_file(arithmetic.TRAIN_FILE)
    dev = load_dev(config.dev_rows)
    report = RecipeReport(stages={}, dev_rows=len(dev))
    common = {"dtype": config.dtype, "seed": config.seed, "overwrite": config.overwrite, "progress": config.progress,
              "max_length": 256}

    if dev:
        report.accuracy["base"] = dev_accuracy(resolve_base(config.base, settings), dev, config)

    report.stages["sft"] = sft(
        base=config.base, data=train, name=f"{config.name}-sft", epochs=config.sft_epochs,
        max_steps=config.sft_steps or -1, lr=config.sft_lr, batch_size=config.batch_size, hot_load=False,
        settings=settings, callbacks=callbacks, **common,
    )
    if dev:
        report.accuracy["sft"] = dev_accuracy(resolve_base(f"{config.name}-sft", settings), dev, config)

    report.stages["grpo"] = grpo(
        base=f"{config.name}-sft", data=train, name=config.name, max_steps=config.grpo_steps, lr=config.grpo_lr,
        batch_size=max(1, config.batch_size // config.num_generations), num_generations=config.num_generations,
        max_completion_length=config.max_completion_length, hot_load=config.hot_load, settings=settings,
        reward_fn=[arithmetic.correct, arithmetic.formatted], callbacks=callbacks, **common,
    )
    if dev:
        report.accuracy["grpo"] = dev_accuracy(resolve_base(config.name, settings), dev, config)
    logger.info("dev accuracy: %s", report.accuracy)
    return report


def load_dev(n: int) -> list[dict[str, Any]]:
    """The first ``n`` problems of the task's shipped dev set."""
    path = arithmetic.data_file(arithmetic.DEV_FILE)
    with open(path, encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    return rows[:n]


def dev_accuracy(base: Base, rows: list[dict[str, Any]], config: RecipeConfig, batch_size: int = 16) -> float:
    """Share of ``rows`` whose greedy completion holds the right ``<answer>``, for ``base`` (and its adapter)."""
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(base)
    dtype = torch.bfloat16 if config.dtype == "bf16" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(base.path, dtype=dtype)
    if base.adapter_path is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(base.adapter_path)).merge_and_unload()
    model.eval()
    right = 0
    for start in range(0, len(rows), batch_size):
        batch = rows[start:start + batch_size]
        texts = generate(model, tokenizer, [r["prompt"] for r in batch], config.max_completion_length)
        right += sum(arithmetic.parse_answer(t) == int(r["answer"]) for t, r in zip(texts, batch, strict=True))
    return right / len(rows)


def generate(model: Any, tokenizer: Any, prompts: list[list[dict[str, Any]]], max_new_tokens: int) -> list[str]:
    """Greedy completions of chat prompts, rendered as the backend renders them (left-padded batch)."""
    import torch

    ids = [encode(tokenizer, render_chat(tokenizer, p)) for p in prompts]
    width = max(len(x) for x in ids)
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in ids])
    mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids])
    with torch.no_grad():
        out = model.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                             do_sample=False, pad_token_id=pad)
    return tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)
