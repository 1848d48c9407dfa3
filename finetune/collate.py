"""Batches for DPO that run each pair's prompt once: ``[prompt, chosen, rejected]`` in one row.

TRL's preference batch holds ``prompt + chosen`` and ``prompt + rejected`` as two padded rows, so every
prompt is computed twice and short answers are padded to the longest. With the default system prompt
a pair of the arithmetic task is ~75 prompt tokens and two ~20-token answers: 2 x 95 = 190 positions
(plus padding) against 115 packed. A 4-D attention mask lets the rejected answer see the prompt but not
the chosen answer, and position ids restart where the prompt ends, so each answer is scored exactly as
in its own row.

The batch keeps TRL's keys (``input_ids``, ``completion_mask``, ...) so TRL's loss code runs unchanged;
the ``packed_*`` keys travel through the model call to :mod:`finetune.lmhead`, which runs the packed rows
and scatters the scores back into TRL's ``[2 * batch, length - 1]`` layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PACKED_KEYS = ("packed_input_ids", "packed_position_ids", "packed_attention_mask", "packed_source")


@dataclass
class SharedPromptCollator:
    """TRL's preference batch plus the packed rows the model actually runs."""

    pad_token_id: int

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        import torch
        from trl.trainer.dpo_trainer import DataCollatorForPreference

        batch = DataCollatorForPreference(pad_token_id=self.pad_token_id)(examples)
        pairs, width = len(examples), batch["input_ids"].shape[1]
        lengths = [len(e["prompt_ids"]) + len(e["chosen_ids"]) + len(e["rejected_ids"]) for e in examples]
        packed_width = max(lengths)
        ids = torch.full((pairs, packed_width), self.pad_token_id, dtype=torch.long)
        positions = torch.zeros((pairs, packed_width), dtype=torch.long)
        mask = torch.zeros((pairs, 1, packed_width, packed_width), dtype=torch.bool)
        # source[r, j]: the packed position whose hidden state predicts token j + 1 of TRL's row r (-1: unscored).
        source = torch.full((2 * pairs, width - 1), -1, dtype=torch.long)
        for b, example in enumerate(examples):
            p, c, r = len(example["prompt_ids"]), len(example["chosen_ids"]), len(example["rejected_ids"])
            ids[b, : p + c + r] = torch.tensor(example["prompt_ids"] + example["chosen_ids"] + example["rejected_ids"])
            positions[b, : p + c] = torch.arange(p + c)
            positions[b, p + c : p + c + r] = torch.arange(p, p + r)
            mask[b, 0, : p + c, : p + c] = torch.ones(p + c, p + c, dtype=torch.bool).tril()
            mask[b, 0, p + c : p + c + r, :p] = True
            mask[b, 0, p + c : p + c + r, p + c : p + c + r] = torch.ones(r, r, dtype=torch.bool).tril()
            pad = torch.arange(p + c + r, packed_width)
            mask[b, 0, pad, pad] = True  # padding attends to itself only: no all-masked row, no NaN
            source[b, p - 1 : p + c - 1] = torch.arange(p - 1, p + c - 1)
            source[pairs + b, p - 1] = p - 1  # the first rejected token follows the prompt, not the chosen answer
            source[pairs + b, p : p + r - 1] = torch.arange(p + c, p + c + r - 1)
        batch.update(packed_input_ids=ids, packed_position_ids=positions, packed_attention_mask=mask,
                     packed_source=source)
        return batch
