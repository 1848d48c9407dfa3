"""4-bit decode kernels for bases whose weights are already 4-bit per group (dequantized Q4 GGUFs).

A tiny random Llama gets its projection weights snapped to a Q4_1 grid (16 evenly spaced
values per group of 32 inputs, as a dequantized GGUF holds them); the lean runner must
detect that, decode with int4 kernels, and give what the full-precision weights give.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from roost.backend.engine import GenerationRequest, SamplingParams
from roost.backend.transformers_engine import TransformersEngine
from roost.config import load_settings
from roost.models import pull
from roost.store import Store
from tests.conftest import make_tiny_model

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def snap_to_q4(weight):
    """``weight`` rounded onto a Q4_1 grid: per group of 32 inputs, ``lo + q * step`` with q in 0..15."""
    out, inp = weight.shape
    groups = weight.float().view(out, inp // 32, 32)
    lo = groups.amin(-1, keepdim=True)
    step = (groups.amax(-1, keepdim=True) - lo) / 15
    q = ((groups - lo) / step).round().clamp(0, 15)  # as GGUF's Q4_1 quantizer: min -> 0, max -> 15
    return (lo + q * step).view(out, inp)


def make_q4_model(path: Path) -> Path:
    import torch
    from transformers import AutoModelForCausalLM

    source = make_tiny_model(path.with_name(path.name + "-src"), seed=3)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    with torch.no_grad():
        for layer in model.model.layers:
            for name in PROJECTIONS:
                module = getattr(layer.self_attn, name, None) or getattr(layer.mlp, name)
                module.weight.copy_(snap_to_q4(module.weight))
    model.save_pretrained(path, safe_serialization=True)
    for file in source.iterdir():
        if file.name.startswith(("tokenizer", "special_tokens", "chat_template")):
            (path / file.name).write_bytes(file.read_bytes())
    return path


@pytest.fixture(scope="module")
def q4_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with base 'tiny-q4' (4-bit projection weights) and a LoRA adapter 'q4-lora' on it."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("q4")
    home = root / "home"
    settings = load_settings(env={"ROOST_HOME": str(home)})
    pull(str(make_q4_model(root / "tiny-q4")), name="tiny-q4", settings=settings, progress=False)
    store = Store(home)
    torch.manual_seed(7)
    model = AutoModelForCausalLM.from_pretrained(store.path("base", "tiny-q4"), dtype=torch.float32)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "down_proj"],
                                                  init_lora_weights=False))
    with store.writing("adapter", "q4-lora", {"base": "tiny-q4"}) as out:
        peft_model.save_pretrained(out)
    return home


def test_pack_q4_reproduces_4bit_weights_and_refuses_ordinary_ones() -> None:
    import torch

    from roost.backend.llama_runner import pack_q4

    generator = torch.Generator().manual_seed(1)
    weight = snap_to_q4(torch.randn(48, 96, generator=generator))
    packed = pack_q4(weight)
    assert packed is not None
    x = torch.randn(5, 96, generator=generator)
    torch.testing.assert_close(packed(x), x @ weight.T, rtol=1e-4, atol=1e-4)
    # A batch of rows in a 3-D input, as the runner passes it.
    torch.testing.assert_close(packed(x.view(5, 1, 96)), (x @ weight.T).view(5, 1, 48), rtol=1e-4, atol=1e-4)

    assert pack_q4(torch.randn(48, 96, generator=generator)) is None  # ordinary weights: not on a grid
    assert pack_q4(snap_to_q4(torch.randn(40, 96, generator=generator))) is None  # rows % 16
    bf16 = snap_to_q4(torch.randn(32, 64, generator=generator)).bfloat16()
    assert pack_q4(bf16) is not None  # the bf16 rounding of a stored 4-bit weight is within tolerance


def test_runner_uses_int4_only_for_4bit_bases(q4_home: Path, tiny_model_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from roost.backend.llama_runner import LlamaRunner

    q4_model = AutoModelForCausalLM.from_pretrained(Store(q4_home).path("base", "tiny-q4"), dtype=torch.float32)
    assert LlamaRunner(q4_model).q4 is not None
    assert LlamaRunner(q4_model, quantization="none").q4 is None
    plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    assert LlamaRunner(plain).q4 is None
    with pytest.raises(ValueError, match="quantization 'int3'"):
        LlamaRunner(plain, quantization="int3")


async def _greedy(engine: TransformersEngine, rid: str, model: str, prompt: list[int], n: int) -> list[int]:
    ids: list[int] = []
    params = SamplingParams(max_tokens=n, temperature=0.0, ignore_eos=True)
    async for chunk in engine.generate(GenerationRequest(rid, model, prompt, params)):
        ids += chunk.token_ids
    return ids


@pytest.mark.asyncio
async def test_int4_decode_matches_full_precision_alone_and_in_mixed_batches(q4_home: Path) -> None:
    """fp32 engine: int4 kernels ("auto") give the tokens the stored weights give ("none"), batched or not."""
    settings = load_settings(env={"ROOST_HOME": str(q4_home)})
    prompts = [[(37 * i + 11 * j) % 40000 + 100 for j in range(3 + 7 * i)] for i in range(8)]
    models = ["tiny-q4", "q4-lora"] * 4
    prompts.append(prompts[0])  # the adapter on the base's first prompt: it must answer differently
    models.append("q4-lora")
    work = list(enumerate(zip(models, prompts, strict=True)))
    outputs = {}
    for quantization in ("none", "auto"):
        engine = TransformersEngine(settings, ["tiny-q4", "q4-lora"], dtype="float32", runner="lean",
                                    max_batch_size=9, quantization=quantization)
        await engine.start()
        try:
            alone = [await _greedy(engine, f"a{i}", m, p, 12) for i, (m, p) in work]
            batched = await asyncio.gather(*(_greedy(engine, f"b{i}", m, p, 12) for i, (m, p) in work))
        finally:
            await engine.stop()
        assert list(batched) == alone
        outputs[quantization] = alone
    assert outputs["auto"] == outputs["none"]
    assert outputs["auto"][8] != outputs["auto"][0]


def test_quantization_setting_is_checked(tmp_path: Path) -> None:
    from roost.errors import ConfigError

    config = tmp_path / "roost.toml"
    config.write_text('[backend]\nquantization = "int8"\n')
    with pytest.raises(ConfigError, match="quantization"):
        load_settings(config, env={})
    config.write_text('[backend]\nquantization = "none"\n')
    assert load_settings(config, env={}).backend.quantization == "none"
