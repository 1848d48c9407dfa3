"""Fine-tuning for roost: SFT, DPO, reward models and GRPO, producing adapters the backend serves.

Example:
    >>> import finetune
    >>> finetune.sft(base="smollm2-135m-instruct", data="train.jsonl", name="support-v1")

``import finetune`` stays light: torch, transformers and TRL load when a method runs.
"""

from __future__ import annotations

from finetune.config import DPOConfig, GRPOConfig, RecipeConfig, RewardConfig, SFTConfig
from finetune.data import DataError
from finetune.dpo import dpo
from finetune.grpo import grpo
from finetune.publish import Result
from finetune.recipes import RecipeReport, sft_then_grpo
from finetune.reward import RewardModel, reward, reward_model
from finetune.sft import sft

__all__ = [
    "DPOConfig", "DataError", "GRPOConfig", "RecipeConfig", "RecipeReport", "Result", "RewardConfig", "RewardModel",
    "SFTConfig", "dpo", "grpo", "reward", "reward_model", "sft", "sft_then_grpo",
]
