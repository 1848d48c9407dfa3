"""Per-token log-probabilities that project only the scored positions through the LM head.

TRL's fused LM head scores only the labelled positions on Triton devices; on
CPU it projects every position (prompt and padding included) and recomputes
the logits in the backward pass in fp32. The LM head of SmolLM2-135M is 28M of
its 135M weights, so for SFT rows whose completion is a third of the tokens,
projecting only the completion saves about a seventh of each step. This head
keeps TRL's interface (``model(..., labels=..., fused_lm_head=True)`` returns
a :class:`trl.trainer.utils.FusedCausalLMOutput`) so the trainers are unchanged.
"""

from __future__ import annotations

import functools
import types
from typing import Any

OUTPUTS = ("log_probs", "entropy", "log_sum_sq_probs", "mean_logits", "is_top1")
# Rows of logits materialized at once: 1024 x 49152 fp32 is 200 MB; larger batches are checkpointed per chunk.
CHUNK_TOKENS = 1024


def supports_compact_head(model: Any) -> bool:
    """True for plain causal LMs: no logit soft-capping or scaling and no MoE router loss, which this head omits."""
    config = model.config.get_text_config()
    return not hasattr(config, "output_router_logits") and all(getattr(config, key, None) in (None, 1.0) for key in
               ("final_logit_softcapping", "logit_scale", "output_multiplier", "lm_head_multiplier", "logits_scaling"))


def add_compact_lm_head(model: Any, *, temperature: float = 1.0, outputs: tuple[str, ...] = ("log_probs",)) -> None:
    """Patch ``model.forward`` so that ``fused_lm_head=True`` projects only positions whose label is not -100.

    Call it on the causal LM itself (``peft_model.get_base_model()``), after TRL patched it; other calls go to
    the forward that was there before.
    """
    import torch
    from trl.trainer.utils import FusedCausalLMOutput

    from finetune.collate import PACKED_KEYS

    previous = model.forward
    wanted = set(outputs) | {"log_probs"}
    backbone_attr = "base_model"

    @functools.wraps(type(model).forward)
    def forward(self: Any, *args: Any, fused_lm_head: bool = False, labels: Any = None, shift_labels: Any = None,
                num_items_in_batch: Any = None, **kwargs: Any) -> Any:
        packed = {key: kwargs.pop(key) for key in PACKED_KEYS if key in kwargs}
        if not fused_lm_head:
            extra = {k: v for k, v in (("labels", labels), ("shift_labels", shift_labels),
                                       ("num_items_in_batch", num_items_in_batch)) if v is not None}
            return previous(*args, **kwargs, **extra)
        kwargs["use_cache"] = False
        lm_head = self.get_output_embeddings()
        if packed:
            # DPO pairs packed by finetune.collate: run [prompt, chosen, rejected] rows, score TRL's rows.
            targets = labels[:, 1:]
            mask = targets != -100
            hidden = getattr(self, backbone_attr)(
                input_ids=packed["packed_input_ids"], attention_mask=packed["packed_attention_mask"],
                position_ids=packed["packed_position_ids"], use_cache=False,
            ).last_hidden_state
            pair = torch.arange(mask.shape[0], device=mask.device).remainder(hidden.shape[0])[:, None]
            selected = hidden[pair.expand_as(mask)[mask], packed["packed_source"][mask]]
        else:
            hidden = getattr(self, backbone_attr)(*args, **kwargs).last_hidden_state
            if shift_labels is None:
                hidden, targets = hidden[:, :-1], labels[:, 1:]
            else:
                targets = shift_labels
            mask = targets != -100
            selected = hidden[mask]
        targets = targets.to(lm_head.weight.device)
        mask = mask.to(lm_head.weight.device)
        scored = _score(selected.to(lm_head.weight.device), lm_head.weight, lm_head.bias, targets[mask],
                        temperature, wanted)
        per_token = {}
        for key in OUTPUTS:
            value = scored.get(key)
            # masked_scatter keeps an all-masked batch connected to the graph (a differentiable zero).
            per_token[key] = None if value is None else value.new_zeros(mask.shape).masked_scatter(mask, value)
        denominator = mask.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch
        loss = -per_token["log_probs"].sum() / denominator
        return FusedCausalLMOutput(loss=loss, label_mask=mask, **per_token)

    model.forward = types.MethodType(forward, model)


def _score(hidden: Any, weight: Any, bias: Any, targets: Any, temperature: float, wanted: set[str]) -> dict[str, Any]:
    import torch
    from torch.utils.checkpoint import checkpoint

    if hidden.shape[0] <= CHUNK_TOKENS:
        return _score_chunk(hidden, weight, bias, targets, temperature, wanted)
    parts: dict[str, list[Any]] = {}
    for start in range(0, hidden.shape[0], CHUNK_TOKENS):
        end = start + CHUNK_TOKENS
        # Recompute each chunk's logits in the backward pass instead of keeping them all (memory bound by CHUNK).
        chunk = checkpoint(_score_chunk, hidden[start:end], weight, bias, targets[start:end], temperature, wanted,
                           use_reentrant=False)
        for key, value in chunk.items():
            parts.setdefault(key, []).append(value)
    return {key: torch.cat(values) for key, values in parts.items()}


def _score_chunk(hidden: Any, weight: Any, bias: Any, targets: Any, temperature: float,
                 wanted: set[str]) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F

    # Under autocast the projection runs in bf16 (as in a plain forward); the softmax statistics run in fp32.
    logits = F.linear(hidden, weight, bias).float()
    if temperature != 1.0:
        logits = logits / temperature
    log_p = logits.log_softmax(-1)
    out = {"log_probs": log_p.gather(-1, targets.unsqueeze(-1)).squeeze(-1)}
    # The other outputs are metrics (TRL logs them); none of them needs a gradient.
    with torch.no_grad():
        if "entropy" in wanted:
            out["entropy"] = -(log_p.exp() * log_p).sum(-1)
        if "log_sum_sq_probs" in wanted:
            out["log_sum_sq_probs"] = torch.logsumexp(2 * log_p, dim=-1)
        if "mean_logits" in wanted:
            out["mean_logits"] = logits.mean(-1)
        if "is_top1" in wanted:
            out["is_top1"] = logits.argmax(-1) == targets
    return out
