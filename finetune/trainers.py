"""TRL's trainers with what roost adds: atomic checkpoints, a compact LM head, pre-tokenized data.

Imported only when training starts (it imports torch, transformers and trl).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import trl
from transformers import ProgressCallback

from finetune.lmhead import add_compact_lm_head, supports_compact_head

logger = logging.getLogger(__name__)

# TRL 1.16 still calls the name transformers 5 renamed; the warning is not the user's to act on.
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
KEEP_CHECKPOINTS = 2


def last_checkpoint(folder: Path) -> Path | None:
    """The newest complete checkpoint in ``folder``; only complete ones ever get their final name."""
    if not folder.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in folder.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name))]
    return max(found)[1] if found else None


class _RoostTrainer:
    """Mixin: checkpoints appear in one rename, and the LM head projects only the scored positions."""

    _lm_head_outputs: tuple[str, ...] = ("log_probs",)
    _lm_head_temperature: float = 1.0

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        # The Trainer writes a checkpoint file by file; a kill half-way would leave a folder that --resume trusts.
        # So it writes into a staging folder, renamed into place only once complete.
        run_dir = Path(self.args.output_dir)
        staging = run_dir / ".partial"
        shutil.rmtree(staging, ignore_errors=True)
        self.args.output_dir = str(staging)
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self.args.output_dir = str(run_dir)
        name = f"checkpoint-{self.state.global_step}"
        if (run_dir / name).exists():
            shutil.rmtree(run_dir / name)
        os.replace(staging / name, run_dir / name)
        shutil.rmtree(staging, ignore_errors=True)
        older = sorted((int(m.group(1)), p) for p in run_dir.iterdir() if (m := _CHECKPOINT.match(p.name)))
        for _, path in older[:-KEEP_CHECKPOINTS]:
            shutil.rmtree(path, ignore_errors=True)

    def _use_compact_lm_head(self) -> None:
        if getattr(self, "_compact_head", False):
            return
        model = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        if supports_compact_head(model):
            add_compact_lm_head(model, temperature=self._lm_head_temperature, outputs=self._lm_head_outputs)
        self._compact_head = True


class SFTTrainer(_RoostTrainer, trl.SFTTrainer):
    """TRL's SFTTrainer on rows roost already rendered and tokenized (``input_ids`` + ``labels``)."""

    _lm_head_outputs = ("log_probs", "entropy", "is_top1")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._use_compact_lm_head()


class DPOTrainer(_RoostTrainer, trl.DPOTrainer):
    """TRL's DPOTrainer on rows roost already tokenized (``prompt_ids``, ``chosen_ids``, ``rejected_ids``)."""

    _lm_head_outputs = ("log_probs", "entropy", "mean_logits", "is_top1")

    def _prepare_dataset(self, dataset: Any, processing_class: Any, args: Any, dataset_name: str) -> Any:
        # Rendering, tokenizing and the length rule already ran in finetune.data with the backend's templates.
        return dataset

    def _precompute_ref_logps(self, dataset: Any, name: str, batch_size: int) -> Any:
        # Runs inside TRL's __init__, after its LM head is patched: switch to the compact one first.
        self._use_compact_lm_head()
        return super()._precompute_ref_logps(dataset, name, batch_size)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._use_compact_lm_head()


class RewardTrainer(_RoostTrainer, trl.RewardTrainer):
    """TRL's RewardTrainer (pairwise Bradley-Terry loss on a one-logit head) with atomic checkpoints."""


class GRPOTrainer(_RoostTrainer, trl.GRPOTrainer):
    """TRL's GRPOTrainer on prompts roost already rendered; completions scored with the compact LM head."""

    _lm_head_outputs = ("log_probs", "entropy")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lm_head_temperature = self.temperature
        self._use_compact_lm_head()


class BarProgress(ProgressCallback):
    """The Trainer's progress bar, with the latest loss (or reward) in the bar instead of a printed dict per log."""

    _SHOWN = ("loss", "reward", "rewards/margins", "accuracy", "eval_loss")

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if state.is_world_process_zero and self.training_bar is not None and logs:
            shown = {k: f"{v:.4g}" for k, v in logs.items() if k in self._SHOWN and isinstance(v, (int, float))}
            if shown:
                self.training_bar.set_postfix(shown, refresh=False)
