"""Reward models: a one-logit sequence-classification head trained on preference rows (Bradley-Terry).

The result is stored like any adapter (or full model with --full) with lineage ``method = "reward"``;
``roost finetune grpo --reward-model NAME`` loads it as the reward of an RL run (RLHF). A reward model
scores ``prompt + completion`` rendered exactly as in training, so GRPO's sampled answers are scored
the way the preference rows were.

Example:
    >>> import finetune
    >>> finetune.reward(data="pairs.jsonl", name="helpful-rm")
    >>> scorer = finetune.reward_model("helpful-rm")
    >>> scorer(prompts=[prompt_text], completions=["Sure, ..."])
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from finetune.base import Base, load_tokenizer, peft_config_for, quiet_progress, resolve_base, torch_dtype
from finetune.config import RewardConfig, resolve_config
from finetune.data import prepare
from finetune.publish import Result, check_free, conclude
from finetune.runs import RunDir
from finetune.training import run_trainer, trl_args
from roost.config import Settings, load_settings
from roost.errors import RoostError, StoreError
from roost.prompts import render_chat
from roost.store import Store

logger = logging.getLogger(__name__)


def reward(config: RewardConfig | None = None, *, config_file: Path | str | None = None,
           settings: Settings | None = None, callbacks: list[Any] | None = None, **fields: Any) -> Result:
    """Train a reward model that scores chosen answers above rejected ones.

    Args:
        config: a ready :class:`RewardConfig`; or give its fields as keywords (``data=..., name=...``).
        config_file: a TOML or YAML file with config fields; keywords override it.
        settings: the roost settings (store, backend); read from roost.toml when omitted.
        callbacks: extra ``transformers.TrainerCallback`` objects.
    """
    config = resolve_config(RewardConfig, config, config_file, fields)
    settings = settings or load_settings()
    base = resolve_base(config.base, settings)
    if base.adapter is not None:
        raise RoostError(f"a reward model starts from a base model; '{config.base}' is adapter '{base.adapter}' "
                         f"on '{base.name}': pass --base {base.name}")
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

    trainer = _trainer(config, base, tokenizer, _pairs(data.rows), _pairs(eval_data.rows) if eval_data else None, run)
    metrics = run_trainer(trainer, run, resume_from=resume_from, progress=config.progress, callbacks=callbacks)

    result = conclude(trainer.model, tokenizer, base=base, method="reward", config=config, data=data,
                      eval_data=eval_data, metrics=metrics, run_dir=run.path, settings=settings)
    run.finish()
    return result


def _pairs(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"chosen_ids": r["prompt_ids"] + r["chosen_ids"], "rejected_ids": r["prompt_ids"] + r["rejected_ids"]}
            for r in rows]


def _trainer(config: RewardConfig, base: Base, tokenizer: Any, rows: list[dict[str, Any]],
             eval_rows: list[dict[str, Any]] | None, run: RunDir) -> Any:
    from datasets import Dataset
    from trl import RewardConfig as TRLRewardConfig

    from finetune.trainers import RewardTrainer

    quiet_progress(config.progress)
    model = _classifier(base.path, torch_dtype(config), tokenizer)
    args = trl_args(TRLRewardConfig, config, run, max_length=config.max_length)
    return RewardTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        eval_dataset=Dataset.from_list(eval_rows) if eval_rows else None,
        processing_class=tokenizer,
        peft_config=peft_config_for(model, config, task_type="SEQ_CLS"),
    )


def _classifier(path: Path, dtype: Any, tokenizer: Any) -> Any:
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    # The new score head is expected to be missing from the causal LM's weights; don't warn about it.
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=dtype)
    finally:
        hf_logging.set_verbosity(level)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model


class RewardModel:
    """A trained reward model as a TRL reward function: ``scorer(prompts, completions) -> list[float]``.

    ``prompts`` are rendered prompt texts (what GRPO passes); ``completions`` are the answers as text.
    """

    __name__ = "reward_model"

    def __init__(self, model: Any, tokenizer: Any, max_length: int = 1024, batch_size: int = 8) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.batch_size = batch_size
        self._chat_header, self._chat_suffix = _turn_markers(tokenizer)

    def __call__(self, prompts: list[str], completions: list[Any], **kwargs: Any) -> list[float]:
        import torch

        texts = [self._text(p, c) for p, c in zip(prompts, completions, strict=True)]
        scores: list[float] = []
        pad = self.tokenizer.pad_token_id
        for start in range(0, len(texts), self.batch_size):
            ids = [self.tokenizer(t, add_special_tokens=False)["input_ids"][: self.max_length]
                   for t in texts[start:start + self.batch_size]]
            width = max(len(row) for row in ids)
            input_ids = torch.tensor([row + [pad] * (width - len(row)) for row in ids])
            mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in ids])
            with torch.no_grad():
                logits = self.model(input_ids=input_ids, attention_mask=mask).logits
            scores += logits[:, 0].float().tolist()
        return scores

    def _text(self, prompt: Any, completion: Any) -> str:
        if isinstance(completion, list):  # a conversational completion: [{"role": "assistant", "content": ...}]
            completion = "".join(str(m.get("content", "")) for m in completion)
        if not isinstance(prompt, str):
            prompt = render_chat(self.tokenizer, prompt)
        # Training rows end with the template's end-of-turn (chat) or EOS (text); decoded samples lack it.
        suffix = self._chat_suffix if self._chat_header and prompt.endswith(self._chat_header) else \
            (self.tokenizer.eos_token or "")
        return prompt + (completion if completion.endswith(suffix) else completion + suffix)


def _turn_markers(tokenizer: Any) -> tuple[str, str]:
    """(the assistant header a rendered prompt ends with, the text the template puts after an answer)."""
    if not getattr(tokenizer, "chat_template", None):
        return "", ""
    user = [{"role": "user", "content": "x"}]
    with_header = render_chat(tokenizer, user, add_generation_prompt=True)
    without = render_chat(tokenizer, user, add_generation_prompt=False)
    full = render_chat(tokenizer, [*user, {"role": "assistant", "content": "y"}], add_generation_prompt=False)
    answer = full[len(with_header):]
    return with_header[len(without):], answer[answer.index("y") + 1:]


def reward_model(name: str, *, settings: Settings | None = None, dtype: str = "fp32") -> RewardModel:
    """Load the reward model stored as ``name`` (by ``roost finetune reward``) as a reward function."""
    import torch

    settings = settings or load_settings()
    entry = Store(settings.home).find(name)
    if entry is None:
        raise StoreError(f"no reward model named '{name}' in the store; train one with `roost finetune reward`")
    if entry.lineage.get("method") != "reward":
        raise RoostError(f"'{name}' is not a reward model (its lineage says method={entry.lineage.get('method')!r})")
    torch_type = torch.bfloat16 if dtype == "bf16" else torch.float32
    if entry.kind == "adapter":
        base = resolve_base(entry.lineage["base"], settings)
        tokenizer = load_tokenizer(base)
        from peft import PeftModel

        model = PeftModel.from_pretrained(_classifier(base.path, torch_type, tokenizer), str(entry.path))
        model = model.merge_and_unload()
    else:
        tokenizer = load_tokenizer(Base(entry.name, entry.path))
        model = _classifier(entry.path, torch_type, tokenizer)
    max_length = int(entry.lineage.get("config", {}).get("max_length", 1024))
    return RewardModel(model, tokenizer, max_length=max_length)
