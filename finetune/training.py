"""The steps every method shares: TRL arguments with roost's defaults, and running a trainer to the end."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from finetune.config import TrainConfig
from finetune.runs import RunDir, metrics_callback

logger = logging.getLogger(__name__)


def trl_args(cls: type, config: TrainConfig, run: RunDir, **extra: Any) -> Any:
    """``cls`` (a TRL config class) filled from ``config``, writing checkpoints under ``run``."""
    import torch

    save = config.save_steps > 0
    values: dict[str, Any] = {
        "output_dir": str(run.checkpoints),
        "per_device_train_batch_size": config.batch_size,
        "per_device_eval_batch_size": config.batch_size,
        "gradient_accumulation_steps": config.grad_accum,
        "learning_rate": config.lr,
        "num_train_epochs": config.epochs,
        "max_steps": config.max_steps,
        "lr_scheduler_type": config.lr_scheduler,
        "warmup_steps": config.warmup_steps,
        "weight_decay": config.weight_decay,
        "logging_steps": config.logging_steps,
        "save_strategy": "steps" if save else "no",
        "save_steps": config.save_steps if save else 500,
        "seed": config.seed,
        "data_seed": config.seed,
        "bf16": config.dtype == "bf16",
        "use_cpu": not torch.cuda.is_available(),
        # TRL turns checkpointing on by default; rows of a few hundred tokens fit in memory without it, and
        # recomputing every activation costs about a quarter of each step.
        "activation_checkpointing": False,
        "report_to": "none",
        "disable_tqdm": not config.progress,
        "dataloader_num_workers": 0,
        "eval_strategy": "no",
        "save_only_model": False,
    }
    values.update(extra)
    return cls(**values)


def run_trainer(trainer: Any, run: RunDir, *, resume_from: Path | None, progress: bool,
                callbacks: list[Any] | None = None) -> dict[str, float]:
    """Train (from ``resume_from`` when given), evaluate when there is eval data, draw the curves.

    Returns the final metrics: the last logged training values plus ``train_*`` summaries and ``eval_*``.
    """
    from transformers import PrinterCallback, ProgressCallback

    from finetune.trainers import BarProgress

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if progress:
        trainer.add_callback(BarProgress())
    trainer.add_callback(metrics_callback(run))
    for callback in callbacks or []:
        trainer.add_callback(callback)

    output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    metrics = _last_logged(trainer)
    metrics.update({k: v for k, v in output.metrics.items() if _number(v)})
    if trainer.eval_dataset is not None:
        evaluated = trainer.evaluate()
        metrics.update({k: v for k, v in evaluated.items() if _number(v)})
    run.plot()
    return metrics


def _last_logged(trainer: Any) -> dict[str, float]:
    last: dict[str, float] = {}
    for entry in trainer.state.log_history:
        last.update({k: v for k, v in entry.items() if _number(v) and not k.startswith("train_")})
    return last


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
