"""GRPO: sample a group of completions per prompt, score them, push the policy towards the better ones.

The reward is a hand-written function (``--reward module:function``, TRL's signature
``fn(prompts, completions, **columns) -> list[float]``, where ``columns`` are the row's other keys and
``completion_ids``), or a reward model trained by ``roost finetune reward`` (``--reward-model NAME``),
or both (their rewards are summed). Prompts reach the function rendered by the chat template, and
completions as text.

Sampling runs on the training machine, so the defaults are small: 4 completions per prompt, at most
64 new tokens.

Example:
    >>> import finetune
    >>> finetune.grpo(data="problems.jsonl", name="math-rl", reward="my_rewards:correct")
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from finetune.base import load_causal_lm, load_tokenizer, peft_config_for, resolve_base
from finetune.config import GRPOConfig, resolve_config
from finetune.data import prepare
from finetune.publish import Result, check_free, conclude
from finetune.runs import RunDir
from finetune.training import run_trainer, trl_args
from roost.config import Settings, load_settings
from roost.errors import RoostError
from roost.store import Store

logger = logging.getLogger(__name__)

RewardFn = Callable[..., list[float]]


def grpo(config: GRPOConfig | None = None, *, config_file: Path | str | None = None,
         settings: Settings | None = None, callbacks: list[Any] | None = None,
         reward_fn: RewardFn | list[RewardFn] | None = None, **fields: Any) -> Result:
    """Reinforcement learning with group-relative advantages (GRPO) on prompt-only rows.

    Args:
        config: a ready :class:`GRPOConfig`; or give its fields as keywords (``data=..., name=...``).
        config_file: a TOML or YAML file with config fields; keywords override it.
        settings: the roost settings (store, backend); read from roost.toml when omitted.
        callbacks: extra ``transformers.TrainerCallback`` objects.
        reward_fn: reward function(s) given as Python callables, in addition to ``reward``/``reward_model``.
    """
    config = resolve_config(GRPOConfig, config, config_file, fields)
    settings = settings or load_settings()
    rewards = reward_functions(config, settings, reward_fn)
    base = resolve_base(config.base, settings)
    if not config.resume:
        check_free(config, settings)

    tokenizer = load_tokenizer(base)
    data = prepare(config.data, "prompt", tokenizer, max_length=config.max_length, skip_invalid=config.skip_invalid,
                   completion_room=config.max_completion_length)

    run = RunDir(Store(settings.home), config.name)
    resume_from = run.start(config.as_dict(), resume=config.resume, overwrite=config.overwrite)

    trainer = _trainer(config, base, tokenizer, data.rows, rewards, run)
    metrics = run_trainer(trainer, run, resume_from=resume_from, progress=config.progress, callbacks=callbacks)

    result = conclude(trainer.model, tokenizer, base=base, method="grpo", config=config, data=data, eval_data=None,
                      metrics=metrics, run_dir=run.path, settings=settings)
    run.finish()
    return result


def reward_functions(config: GRPOConfig, settings: Settings,
                     extra: RewardFn | list[RewardFn] | None = None) -> list[RewardFn]:
    """The rewards a run optimizes: ``--reward``, ``--reward-model`` and Python callables, in that order."""
    functions: list[RewardFn] = []
    if config.reward:
        functions.append(import_reward(config.reward))
    if config.reward_model:
        from finetune.reward import reward_model

        functions.append(reward_model(config.reward_model, settings=settings, dtype=config.dtype))
    if extra is not None:
        functions += list(extra) if isinstance(extra, list) else [extra]
    if not functions:
        raise RoostError("GRPO needs a reward: pass --reward module:function or --reward-model NAME")
    return functions


def import_reward(spec: str) -> RewardFn:
    """The function ``module:function`` names; the working directory is importable, as with ``python -m``."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise RoostError(f"--reward '{spec}' must look like module:function (for example my_rewards:correct)")
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise RoostError(f"--reward '{spec}': cannot import module '{module_name}': {exc}") from None
    function = getattr(module, attr, None)
    if not callable(function):
        raise RoostError(f"--reward '{spec}': module '{module_name}' has no function '{attr}'")
    return function


def _trainer(config: GRPOConfig, base: Any, tokenizer: Any, rows: list[dict[str, Any]], rewards: list[RewardFn],
             run: RunDir) -> Any:
    from datasets import Dataset
    from trl import GRPOConfig as TRLGRPOConfig

    from finetune.trainers import GRPOTrainer

    model = load_causal_lm(base, config)
    args = trl_args(
        TRLGRPOConfig, config, run,
        # TRL counts completions per device batch; roost's batch_size counts prompts.
        per_device_train_batch_size=config.batch_size * config.num_generations,
        per_device_eval_batch_size=config.batch_size * config.num_generations,
        num_generations=config.num_generations,
        max_completion_length=config.max_completion_length,
        temperature=config.temperature,
        top_k=config.top_k,
        beta=config.beta,
        loss_type=config.loss_type,
        remove_unused_columns=False,
    )
    return GRPOTrainer(
        model=model,
        reward_funcs=rewards,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=peft_config_for(model, config),
    )
