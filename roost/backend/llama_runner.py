"""A lean forward pass for Llama-family models, with every LoRA adapter of a batch applied at once.

The transformers forward spends most of a small model's decode step outside the
matrix products: about 1.5 ms per layer for SmolLM2-135M at batch 1 (46 ms a
token on 2 cores), of which about 0.35 ms is reading the layer's weights. This
runner reads the same weights (q/k/v and gate/up fused into one matrix each,
viewed in place so no memory is duplicated) and runs a layer in about 25 tensor
operations. The transformers engine uses it for the architectures it knows and
falls back to transformers + PEFT for the rest.

LoRA: every loaded adapter's A and B matrices are stacked per projection. When
the mix of adapters in the batch changes, the adapters it uses are laid side by
side (their ranks concatenated); each step then costs one product with all their
A matrices, a mask that keeps each row's own adapter, and one product per
projection with B - a handful of operations however many adapters the batch
mixes, and each adapter's weights read once.
"""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

SUPPORTED = ("llama", "mistral", "qwen2")
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# Projections that read the same input, and so share one LoRA A product.
GROUPS = {"qkv": ("q_proj", "k_proj", "v_proj"), "o": ("o_proj",), "gate_up": ("gate_proj", "up_proj"),
          "down": ("down_proj",)}
Q4_GROUP = 32  # inputs per scale/offset group, as in GGUF's Q4_0 and Q4_1
QUANTIZATION = ("auto", "none")
_LORA_KEY = re.compile(r"layers\.(\d+)\.(?:self_attn|mlp)\.(\w+)\.lora_([AB])\.weight$")


class UnsupportedAdapter(ValueError):
    """The adapter uses a LoRA feature this runner does not apply (DoRA, biases, extra trained modules)."""


def unsupported_reason(model: Any) -> str | None:
    """Why :class:`LlamaRunner` cannot run ``model``, or None when it can."""
    config = model.config
    if config.model_type not in SUPPORTED:
        return f"architecture '{config.model_type}' (the lean runner knows {', '.join(SUPPORTED)})"
    if getattr(config, "hidden_act", "silu") != "silu":
        return f"activation '{config.hidden_act}'"
    if getattr(config, "mlp_bias", False):
        return "MLP biases"
    return None


class LlamaRunner:
    """Prefill and decode for a Llama-family model over a :class:`~roost.backend.transformers_engine.SlotCache`."""

    def __init__(self, model: Any, quantization: str = "auto") -> None:
        import torch

        if quantization not in QUANTIZATION:
            raise ValueError(f"quantization '{quantization}' is not one of {', '.join(QUANTIZATION)}")

        config = model.config
        self.model = model
        self.heads = config.num_attention_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.kv_heads = getattr(config, "num_key_value_heads", None) or self.heads
        self.eps = config.rms_norm_eps
        self.hidden = config.hidden_size
        self.embed = model.get_input_embeddings().weight
        self.norm = model.model.norm.weight
        self.lm_head = model.get_output_embeddings().weight
        self.rotary = model.model.rotary_emb
        self.layers = []
        for layer in model.model.layers:
            attn, mlp = layer.self_attn, layer.mlp
            qkv = _fuse(attn.q_proj, attn.k_proj, attn.v_proj)
            gate_up = _fuse(mlp.gate_proj, mlp.up_proj)
            bias = None
            if attn.q_proj.bias is not None:
                bias = torch.cat([attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias])
            self.layers.append((layer.input_layernorm.weight, qkv, bias, attn.o_proj.weight, attn.o_proj.bias,
                                layer.post_attention_layernorm.weight, gate_up, mlp.down_proj.weight))
        self.dims = {name: (module.in_features, module.out_features)
                     for name, module in _projections(model.model.layers[0]).items()}
        self.lora = LoraBank(len(self.layers), self.dims, self.embed.dtype)
        self.q4 = pack_layers_q4(self.layers) if quantization == "auto" else None
        if self.q4 is not None:
            logger.info("weights are 4-bit per group of %d: decode steps run int4 kernels", Q4_GROUP)

    def forward(self, input_ids: Any, positions: Any, mask: Any, cache: Any, adapters: list[int] | None) -> Any:
        """Logits ``[batch, vocab]`` of each row's last column.

        Args:
            input_ids: ``[batch, tokens]`` (left-padded for a prefill).
            positions: ``[batch, tokens]`` rotary positions.
            mask: ``[batch, 1, tokens, kv_len]`` boolean, True where attention may look.
            cache: the slot cache, already routed with ``plan``.
            adapters: per row, the adapter's index in :attr:`lora` (0 = none); None when no row has one.
        """
        import torch.nn.functional as F

        batch, tokens = input_ids.shape
        heads, kv_heads, dim = self.heads, self.kv_heads, self.head_dim
        x = F.embedding(input_ids, self.embed)
        cos, sin = self.rotary(x, positions)
        cos, sin = cos[:, :, None, :], sin[:, :, None, :]  # broadcast over heads: [batch, tokens, 1, dim]
        lora = self.lora.select(adapters) if adapters is not None else None
        q_end, k_end = heads * dim, (heads + kv_heads) * dim
        decode = tokens == 1
        q4 = self.q4 if decode else None
        for i, (norm1, qkv_w, qkv_b, o_w, o_b, norm2, gate_up_w, down_w) in enumerate(self.layers):
            if q4 is not None:
                qkv_w, o_w, gate_up_w, down_w = q4[i]
            h = F.rms_norm(x, (self.hidden,), norm1, self.eps)
            qkv = _linear(h, qkv_w, qkv_b)
            if lora is not None:
                qkv = lora.apply("qkv", i, h, qkv)
            qk = qkv[..., :k_end].unflatten(-1, (heads + kv_heads, dim))  # [batch, tokens, heads, dim]
            qk = qk * cos + _rotate_half(qk) * sin
            q, k = qk[:, :, :heads], qk[:, :, heads:]
            v = qkv[..., k_end:].unflatten(-1, (kv_heads, dim))
            keys, values = cache.update(k.transpose(1, 2), v.transpose(1, 2), i)
            if decode:
                # One query per row: fold the query heads of each key/value head into its query axis,
                # so grouped-query attention needs no copy of the keys (9 heads over 3 here).
                q = q.reshape(batch, kv_heads, heads // kv_heads, dim)
                attn = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)
                attn = attn.reshape(batch, 1, q_end)
            else:
                attn = F.scaled_dot_product_attention(q.transpose(1, 2), keys, values, attn_mask=mask,
                                                      enable_gqa=kv_heads != heads)
                attn = attn.transpose(1, 2).reshape(batch, tokens, q_end)
            out = _linear(attn, o_w, o_b)
            if lora is not None:
                out = lora.apply("o", i, attn, out)
            x = x + out
            h = F.rms_norm(x, (self.hidden,), norm2, self.eps)
            gate_up = _linear(h, gate_up_w)
            if lora is not None:
                gate_up = lora.apply("gate_up", i, h, gate_up)
            gate, up = gate_up.chunk(2, dim=-1)
            act = F.silu(gate) * up
            out = _linear(act, down_w)
            if lora is not None:
                out = lora.apply("down", i, act, out)
            x = x + out
        x = F.rms_norm(x[:, -1], (self.hidden,), self.norm, self.eps)
        return F.linear(x, self.lm_head)


class Q4Weight:
    """A ``[out, in]`` matrix as packed int4 (torch's CPU layout) with a scale and an offset per group of inputs.

    Row ``n``, input ``k`` is ``(q - 8) * scale + offset`` of its group ``k // Q4_GROUP``.
    """

    def __init__(self, packed: Any, scales_and_zeros: Any, out_features: int) -> None:
        self.packed = packed
        self.scales_and_zeros = scales_and_zeros  # [in / group, out, 2]
        self.out_features = out_features

    def __call__(self, x: Any) -> Any:
        import torch

        flat = x.reshape(-1, x.shape[-1])
        if not flat.is_contiguous():
            flat = flat.contiguous()
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(flat, self.packed, Q4_GROUP, self.scales_and_zeros)
        return y.view(*x.shape[:-1], self.out_features)


def pack_q4(weight: Any) -> Q4Weight | None:
    """``weight`` as a :class:`Q4Weight` when each group of 32 inputs lies on 16 evenly spaced values.

    The grid runs from the group's minimum to its maximum, as GGUF's Q4_1 quantizer
    makes it, so weights dequantized from Q4_1 qualify (up to the rounding of the stored
    dtype); anything else (a model trained or saved in bf16/fp32) returns None.
    The check allows 1/64 of the group's largest magnitude per weight, far below the grid
    spacing (1/15 of the group's range) that ordinary weights would miss by.
    """
    import torch

    out_features, in_features = weight.shape
    if in_features % Q4_GROUP or out_features % 16 or weight.dtype not in (torch.bfloat16, torch.float32):
        return None
    w = weight.detach().float().view(out_features, in_features // Q4_GROUP, Q4_GROUP)
    lo, hi = w.amin(-1, keepdim=True), w.amax(-1, keepdim=True)
    step = (hi - lo) / 15
    q = torch.where(step > 0, (w - lo) / torch.where(step > 0, step, 1.0), 0.0).round_().clamp_(0, 15)
    error = (lo + q * step - w).abs()
    tolerance = torch.maximum(lo.abs(), hi.abs()) / 64
    if bool((error > tolerance).any()):
        return None
    scales = step.squeeze(-1)  # [out, groups]
    zeros = (lo + 8 * step).squeeze(-1)  # (q - 8) * step + lo + 8 * step == lo + q * step
    scales_and_zeros = torch.stack([scales.T, zeros.T], dim=-1).to(weight.dtype).contiguous()
    packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q.view(out_features, in_features).to(torch.int32), 1)
    return Q4Weight(packed, scales_and_zeros, out_features)


def pack_layers_q4(layers: list[tuple[Any, ...]]) -> list[tuple[Q4Weight, ...]] | None:
    """Every layer's (qkv, o, gate_up, down) as :class:`Q4Weight`, or None unless all of them are 4-bit."""
    import torch

    if not hasattr(torch.ops.aten, "_weight_int4pack_mm_for_cpu"):
        return None
    packed = []
    for _, qkv, _, o, _, _, gate_up, down in layers:
        matrices = []
        for weight in (qkv, o, gate_up, down):
            q4 = pack_q4(weight)
            if q4 is None:  # the first matrix of an ordinary model ends the search
                return None
            matrices.append(q4)
        packed.append(tuple(matrices))
    return packed


def _linear(x: Any, weight: Any, bias: Any = None) -> Any:
    import torch.nn.functional as F

    if isinstance(weight, Q4Weight):
        y = weight(x)
        return y if bias is None else y.add_(bias)
    return F.linear(x, weight, bias)


class LoraBank:
    """The LoRA adapters of one base, stacked per projection: ``A [layers, n, rank, in]``, ``B [layers, n, rank, out]``.

    Index 0 is the zero adapter (base rows). B is stored pre-multiplied by the
    adapter's scaling and in the model's dtype, so the bank holds each adapter once
    (half its fp32 file size in bf16). An adapter that lacks a projection another
    one has gets zeros there; ranks are padded to the largest loaded rank.
    """

    def __init__(self, layers: int, dims: dict[str, tuple[int, int]], dtype: Any) -> None:
        self.layers = layers
        self.dims = dims
        self.dtype = dtype
        self.keys: list[str] = []  # adapter key per index - 1
        self.a: dict[str, Any] = {}
        self.b: dict[str, Any] = {}
        self._selected: dict[tuple[int, ...], _Selection] = {}

    def index(self, key: str) -> int:
        return self.keys.index(key) + 1

    def add(self, key: str, folder: Path) -> None:
        """Read the adapter in ``folder`` (adapter_config.json + adapter_model.safetensors) as ``key``."""
        import torch

        weights = read_lora(folder, self.layers, self.dims)
        n = len(self.keys) + 2  # the zero adapter, the loaded ones, this one
        for proj in {*self.a, *weights}:
            inp, out = self.dims[proj]
            a_old, b_old = self.a.get(proj), self.b.get(proj)
            old_rank = a_old.shape[2] if a_old is not None else 0
            new_rank = weights[proj][0].shape[1] if proj in weights else 0
            rank = max(old_rank, new_rank)
            a = torch.zeros(self.layers, n, rank, inp, dtype=self.dtype)
            b = torch.zeros(self.layers, n, rank, out, dtype=self.dtype)
            if a_old is not None:
                a[:, :n - 1, :old_rank] = a_old
                b[:, :n - 1, :old_rank] = b_old
            if proj in weights:
                a[:, n - 1, :new_rank], b[:, n - 1, :new_rank] = weights[proj]
            self.a[proj], self.b[proj] = a, b
        self.keys.append(key)
        self._selected.clear()

    def remove(self, key: str) -> None:
        import torch

        i = self.index(key)
        for table in (self.a, self.b):
            for proj, stacked in table.items():
                table[proj] = torch.cat([stacked[:, :i], stacked[:, i + 1:]], dim=1)
        self.keys.remove(key)
        self._selected.clear()

    def select(self, rows: list[int]) -> _Selection:
        """The adapters of a batch (one bank index per row); kept while the batch's composition stays the same."""
        key = tuple(rows)
        selection = self._selected.get(key)
        if selection is None:
            if len(self._selected) >= 2:  # a prefill batch and a decode batch alternate; keep both
                self._selected.clear()
            selection = self._selected[key] = _Selection(self, rows)
        return selection


class _Selection:
    """The distinct adapters of a batch, their ranks side by side: per group ``A [layers, ranks, in]``.

    A step computes ``t = x @ A`` once for all of them (each adapter's weights are
    read once, however many rows use it), zeroes the rank columns of the other
    adapters in each row (``mask``), then adds ``t @ B`` per projection.
    """

    def __init__(self, bank: LoraBank, rows: list[int]) -> None:
        import torch

        used = sorted(set(rows) - {0})
        index = torch.tensor(used)
        self.a: dict[str, Any] = {}
        self.b: dict[str, list[tuple[int, int, int, int, Any]]] = {}  # rank and output slices, B per projection
        self.mask: dict[str, Any] = {}
        for group, projs in GROUPS.items():
            present = [p for p in projs if p in bank.a]
            if not present:
                continue
            a_parts, b_parts, mask_parts, r0 = [], [], [], 0
            for p in present:
                layers, _, rank, inp = bank.a[p].shape
                a_parts.append(bank.a[p].index_select(1, index).reshape(layers, len(used) * rank, inp))
                b_sel = bank.b[p].index_select(1, index).reshape(layers, len(used) * rank, -1)
                o0 = sum(bank.dims[q][1] for q in projs[:projs.index(p)])
                b_parts.append((r0, r0 + len(used) * rank, o0, o0 + bank.dims[p][1], b_sel))
                r0 += len(used) * rank
                # Row i keeps only the rank columns of its own adapter.
                owner = torch.tensor([used.index(r) if r else -1 for r in rows])
                mask_parts.append(owner[:, None] == torch.arange(len(used)).repeat_interleave(rank)[None, :])
            self.a[group] = torch.cat(a_parts, dim=1) if len(a_parts) > 1 else a_parts[0]
            self.b[group] = b_parts
            self.mask[group] = torch.cat(mask_parts, dim=1).to(bank.dtype)[:, None, :]  # [rows, 1, ranks]

    def apply(self, group: str, layer: int, x: Any, out: Any) -> Any:
        """``out + (x @ A * mask) @ B`` for projection group ``group`` of ``layer``, in place."""
        import torch.nn.functional as F

        a = self.a.get(group)
        if a is None:
            return out
        t = F.linear(x, a[layer]).mul_(self.mask[group])
        flat_t, flat_out = t.view(-1, t.shape[-1]), out.view(-1, out.shape[-1])
        for r0, r1, o0, o1, b in self.b[group]:
            flat_out[:, o0:o1].addmm_(flat_t[:, r0:r1], b[layer])
        return out


def read_lora(folder: Path, layers: int, dims: dict[str, tuple[int, int]]) -> dict[str, tuple[Any, Any]]:
    """Per projection, ``(A [layers, rank, in], B*scaling [layers, rank, out])`` from a PEFT LoRA folder.

    Raises:
        UnsupportedAdapter: for DoRA, LoRA biases, extra trained modules or weights outside the projections.
    """
    import torch
    from safetensors.torch import load_file

    config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    for flag, what in (("use_dora", "DoRA"), ("lora_bias", "LoRA biases"), ("modules_to_save", "modules_to_save"),
                       ("trainable_token_indices", "trainable tokens")):
        if config.get(flag):
            raise UnsupportedAdapter(f"{folder}: {what} is not supported; train a plain LoRA adapter")
    weights_file = folder / "adapter_model.safetensors"
    if not weights_file.is_file():
        raise UnsupportedAdapter(f"{folder} has no adapter_model.safetensors (roost never loads pickled weights)")
    tensors = load_file(str(weights_file))
    found: dict[tuple[str, str], dict[int, Any]] = {}
    for name, tensor in tensors.items():
        match = _LORA_KEY.search(name)
        if match is None or match.group(2) not in dims:
            raise UnsupportedAdapter(f"{folder}: weight '{name}' is outside the attention and MLP projections")
        layer, proj, side = int(match.group(1)), match.group(2), match.group(3)
        if layer >= layers:
            raise UnsupportedAdapter(f"{folder}: weight '{name}' is for layer {layer}; the base has {layers}")
        found.setdefault((proj, side), {})[layer] = tensor

    alpha, rslora = config.get("lora_alpha", 8), config.get("use_rslora", False)
    patterns = config.get("alpha_pattern") or {}
    out: dict[str, tuple[Any, Any]] = {}
    for proj in dims:
        a_layers, b_layers = found.get((proj, "A"), {}), found.get((proj, "B"), {})
        if not a_layers:
            continue
        ranks = {t.shape[0] for t in a_layers.values()}
        rank = max(ranks)
        inp, width = dims[proj]
        a = torch.zeros(layers, rank, inp)
        b = torch.zeros(layers, rank, width)
        for layer, a_t in a_layers.items():
            if layer not in b_layers or a_t.shape[1] != inp or b_layers[layer].shape != (width, a_t.shape[0]):
                raise UnsupportedAdapter(f"{folder}: {proj} of layer {layer} does not fit the base's shapes")
            r = a_t.shape[0]
            module = f"model.layers.{layer}.{'self_attn' if proj in GROUPS['qkv'] + GROUPS['o'] else 'mlp'}.{proj}"
            lora_alpha = _pattern_value(patterns, module, alpha)
            scaling = lora_alpha / (math.sqrt(r) if rslora else r)
            a[layer, :r] = a_t.float()
            b[layer, :r] = b_layers[layer].float().T * scaling
        out[proj] = (a, b)
    if not out:
        raise UnsupportedAdapter(f"{folder}: no LoRA weights for the attention or MLP projections")
    return out


def _pattern_value(patterns: dict[str, Any], module: str, default: Any) -> Any:
    for key, value in patterns.items():  # PEFT's rule: the key matches the end of the module name
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return default


def _rotate_half(x: Any) -> Any:
    import torch

    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _projections(layer: Any) -> dict[str, Any]:
    return {"q_proj": layer.self_attn.q_proj, "k_proj": layer.self_attn.k_proj, "v_proj": layer.self_attn.v_proj,
            "o_proj": layer.self_attn.o_proj, "gate_proj": layer.mlp.gate_proj, "up_proj": layer.mlp.up_proj,
            "down_proj": layer.mlp.down_proj}


def _fuse(*linears: Any) -> Any:
    """One weight matrix for several projections of the same input; each module keeps a view of its rows."""
    import torch
    from torch import nn

    fused = torch.cat([linear.weight.detach() for linear in linears]).contiguous()
    start = 0
    for linear in linears:
        rows = linear.weight.shape[0]
        linear.weight = nn.Parameter(fused[start:start + rows], requires_grad=False)
        start += rows
    return fused
