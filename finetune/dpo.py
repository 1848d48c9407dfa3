"""Direct preference optimization: ``prompt``/``chosen``/``rejected`` rows -> an adapter in the store.

With LoRA the reference model is the base with the adapter disabled (no second copy in memory); when
``--base`` names an adapter, TRL keeps a frozen copy of it as the reference instead. Reference
log-probs are computed once before training by default (``precompute_ref``).

Example:
    >>> import finetune
    >>> finetune.dpo(base="support-v1", data="pairs.jsonl", name="support-v2", beta=0.1)
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from finetune.base import load_causal_lm, load_tokenizer, peft_config_for, resolve_base
from finetune.config import DPOConfig, resolve_config
from finetune.data import prepare
from finetune.publish import Result, check_free, conclude
from finetune.runs import RunDir
from finetune.training import run_trainer, trl_args
from roost.config import Settings, load_settings
from roost.store import Store

logger = logging.getLogger(__name__)


def dpo(config: DPOConfig | None = None, *, config_file: Path | str | None = None, settings: Settings | None = None,
        callbacks: list[Any] | None = None, **fields: Any) -> Result:
    """Train ``base`` to prefer the chosen answers over the rejected ones (DPO).

    Args:
        config: a ready :class:`DPOConfig`; or give its fields as keywords (``data=..., name=...``).
        config_file: a TOML or YAML file with config fields; keywords override it.
        settings: the roost settings (store, backend); read from roost.toml when omitted.
        callbacks: extra ``transformers.TrainerCallback`` objects.
    """
    config = resolve_config(DPOConfig, config, config_file, fields)
    settings = settings or load_settings()
    base = resolve_base(config.base, settings)
    if not config.resume:
        check_free(config, settings)

    tokenizer = load_tokenizer(base)
    data = prepare(config.data, "preference", tokenizer, max_length=config.max_length,
                   skip_invalid=config.skip_invalid)
    eval_data = None
    if config.eval_data is not None:
        eval_data = prepare(config.eval_data, "preference", tokenizer, max_length=config.max_length,
                            skip_invalid=config.skip_invalid)

    run = RunDir(Store(settings.home), config.name)
    resume_from = run.start(config.as_dict(), resume=config.resume, overwrite=config.overwrite)

    trainer = build_trainer(config, base, tokenizer, data.rows, eval_data.rows if eval_data else None, run)
    metrics = run_trainer(trainer, run, resume_from=resume_from, progress=config.progress, callbacks=callbacks)

    result = conclude(trainer.model, tokenizer, base=base, method="dpo", config=config, data=data,
                      eval_data=eval_data, metrics=metrics, run_dir=run.path, settings=settings)
    run.finish()
    return result


def build_trainer(config: DPOConfig, base: Any, tokenizer: Any, rows: list[dict[str, Any]],
                  eval_rows: list[dict[str, Any]] | None, run: RunDir) -> Any:
    """roost's DPO trainer on tokenized preference rows (also used by the benchmark)."""
    from datasets import Dataset
    from trl import DPOConfig as TRLDPOConfig

    from finetune.collate import SharedPromptCollator
    from finetune.trainers import DPOTrainer

    model = load_causal_lm(base, config)
    args = trl_args(
        TRLDPOConfig, config, run,
        beta=config.beta,
        loss_type=[config.loss_type],
        max_length=config.max_length,
        precompute_ref_log_probs=_precompute(config, len(rows)),
    )
    # The packed rows need a 4-D attention mask, which only the SDPA attention takes as given.
    shared = config.shared_prompt and getattr(model.config, "_attn_implementation", None) == "sdpa"
    return DPOTrainer(
        model=model,
        args=args,
        data_collator=SharedPromptCollator(tokenizer.pad_token_id) if shared else None,
        train_dataset=Dataset.from_list(rows),
        eval_dataset=Dataset.from_list(eval_rows) if eval_rows else None,
        processing_class=tokenizer,
        peft_config=peft_config_for(model, config),
    )


def _precompute(config: DPOConfig, rows: int) -> bool:
    """Precompute pays off only when a row is seen twice; otherwise it is the same forward, done earlier."""
    if config.precompute_ref is not None:
        return config.precompute_ref
    per_step = config.batch_size * config.grad_accum
    seen = config.max_steps * per_step if config.max_steps > 0 else config.epochs * rows
    return seen > rows
