"""Supervised fine-tuning: rows -> rendered, tokenized, completion-only labels -> an adapter in the store.

Example:
    >>> import finetune
    >>> result = finetune.sft(data="train.jsonl", name="support-v1", epochs=2)
    >>> result.name, result.metrics["loss"]
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from finetune.base import load_causal_lm, load_tokenizer, peft_config_for, resolve_base
from finetune.config import SFTConfig, resolve_config
from finetune.data import prepare
from finetune.publish import Result, check_free, conclude
from finetune.runs import RunDir
from finetune.training import run_trainer, trl_args
from roost.config import Settings, load_settings
from roost.store import Store

logger = logging.getLogger(__name__)


def sft(config: SFTConfig | None = None, *, config_file: Path | str | None = None, settings: Settings | None = None,
        callbacks: list[Any] | None = None, **fields: Any) -> Result:
    """Fine-tune ``base`` on conversational or prompt-completion rows; loss on completion tokens only.

    Args:
        config: a ready :class:`SFTConfig`; or give its fields as keywords (``data=..., name=...``).
        config_file: a TOML or YAML file with config fields; keywords override it.
        settings: the roost settings (store, backend); read from roost.toml when omitted.
        callbacks: extra ``transformers.TrainerCallback`` objects.

    Returns the :class:`Result`: store name and folder, final metrics, whether a backend hot-loaded it.
    """
    config = resolve_config(SFTConfig, config, config_file, fields)
    settings = settings or load_settings()
    base = resolve_base(config.base, settings)
    if not config.resume:
        check_free(config, settings)

    tokenizer = load_tokenizer(base)
    data = prepare(config.data, "sft", tokenizer, max_length=config.max_length, skip_invalid=config.skip_invalid)
    eval_data = None
    if config.eval_data is not None:
        eval_data = prepare(config.eval_data, "sft", tokenizer, max_length=config.max_length,
                            skip_invalid=config.skip_invalid)

    run = RunDir(Store(settings.home), config.name)
    resume_from = run.start(config.as_dict(), resume=config.resume, overwrite=config.overwrite)

    trainer = build_trainer(config, base, tokenizer, data.rows, eval_data.rows if eval_data else None, run)
    metrics = run_trainer(trainer, run, resume_from=resume_from, progress=config.progress, callbacks=callbacks)

    result = conclude(trainer.model, tokenizer, base=base, method="sft", config=config, data=data,
                      eval_data=eval_data, metrics=metrics, run_dir=run.path, settings=settings)
    run.finish()
    return result


def build_trainer(config: SFTConfig, base: Any, tokenizer: Any, rows: list[dict[str, Any]],
                  eval_rows: list[dict[str, Any]] | None, run: RunDir) -> Any:
    """roost's SFT trainer on tokenized rows (also used by the benchmark)."""
    from datasets import Dataset
    from trl import SFTConfig as TRLSFTConfig

    from finetune.trainers import SFTTrainer

    model = load_causal_lm(base, config)
    args = trl_args(
        TRLSFTConfig, config, run,
        padding_free=config.padding_free,
        # Rows were checked against max_length in finetune.data; TRL refuses padding-free with a max_length.
        max_length=None if config.padding_free else config.max_length,
    )
    return SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        eval_dataset=Dataset.from_list(eval_rows) if eval_rows else None,
        processing_class=tokenizer,
        peft_config=peft_config_for(model, config),
    )
