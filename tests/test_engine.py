"""The transformers engine: continuous batching, mixed LoRA batches, streaming text, cancellation.

A tiny random Llama (fp32) sits in a temporary store with two random LoRA adapters of
different ranks and target modules; every batched result is checked token for token
against the same request run alone and against PEFT's own ``generate``.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from roost.backend.engine import (
    ContextLengthExceeded,
    EngineError,
    GenerationRequest,
    InvalidRequest,
    QueueFull,
    SamplingParams,
    UnknownModel,
)
from roost.backend.transformers_engine import TextStream, TransformersEngine
from roost.config import load_settings
from roost.models import pull
from roost.store import Store
from tests.conftest import make_tiny_model

ADAPTERS = {  # different ranks and target modules, so a mixed batch meets layers one adapter lacks
    "lora-a": {"r": 4, "target_modules": ["q_proj", "v_proj"]},
    "lora-b": {"r": 8, "target_modules": ["k_proj", "o_proj", "gate_proj", "down_proj"]},
}


@pytest.fixture(scope="module")
def tiny_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with base 'tiny' and adapters 'lora-a' and 'lora-b' (lineage: base tiny)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("engine")
    source = make_tiny_model(root / "tiny-src")
    home = root / "home"
    settings = load_settings(env={"ROOST_HOME": str(home)})
    pull(str(source), name="tiny", settings=settings, progress=False)
    store = Store(home)
    for seed, (name, lora) in enumerate(ADAPTERS.items()):
        torch.manual_seed(100 + seed)
        model = AutoModelForCausalLM.from_pretrained(store.path("base", "tiny"), dtype=torch.float32)
        # init_lora_weights=False gives B != 0, so the adapter really changes the outputs.
        peft_model = get_peft_model(model, LoraConfig(**lora, lora_alpha=16, init_lora_weights=False))
        with store.writing("adapter", name, {"base": "tiny"}) as out:
            peft_model.save_pretrained(out)
    return home


@pytest.fixture(scope="module")
def reference(tiny_home: Path):
    """Greedy generation by the in-process PEFT model: (adapter or None, prompt, n) -> new token ids."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    store = Store(tiny_home)
    base = AutoModelForCausalLM.from_pretrained(store.path("base", "tiny"), dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(store.path("adapter", "lora-a")), adapter_name="lora-a")
    model.load_adapter(str(store.path("adapter", "lora-b")), adapter_name="lora-b")
    model.eval()

    def generate(adapter: str | None, prompt: list[int], n: int) -> list[int]:
        with torch.no_grad():
            out = model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                                 max_new_tokens=n, do_sample=False, adapter_names=[adapter or "__base__"])
        return out[0, len(prompt):].tolist()

    return generate


def engine_for(home: Path, models: list[str] | None = None, **kwargs) -> TransformersEngine:
    # One thread: a tiny model gains nothing from two, and on a busy shared machine they wait on each other.
    return TransformersEngine(load_settings(env={"ROOST_HOME": str(home)}), models, dtype="float32", threads=1,
                              **kwargs)


async def collect(engine: TransformersEngine, request: GenerationRequest) -> tuple[list[int], str, str]:
    ids, text, reason = [], [], None
    async for chunk in engine.generate(request):
        ids += chunk.token_ids
        text.append(chunk.text)
        reason = chunk.finish_reason
    return ids, "".join(text), reason


def greedy(rid: str, model: str, prompt: list[int], n: int, **params) -> GenerationRequest:
    return GenerationRequest(rid, model, prompt, SamplingParams(max_tokens=n, temperature=0.0, **params))


def mixed_requests() -> list[GenerationRequest]:
    """16 greedy requests: prompts of 2 to 600 tokens (600 > one prefill chunk), three models, 6-14 new tokens."""
    rng = random.Random(0)
    lengths = [2, 5, 9, 17, 33, 64, 3, 120, 7, 600, 11, 48, 1, 25, 90, 14]
    models = ["tiny", "lora-a", "lora-b"]
    return [greedy(f"r{i}", models[i % 3], [rng.randrange(100, 40000) for _ in range(n)], 6 + i % 9)
            for i, n in enumerate(lengths)]


async def run_staggered(engine: TransformersEngine, requests: list[GenerationRequest]) -> list[list[int]]:
    """Start half the requests, and the other half once the first has streamed a token: they join mid-decode."""
    half = len(requests) // 2
    first = [asyncio.create_task(collect(engine, r)) for r in requests[:half]]
    while engine.stats().extra["decode_steps"] == 0:
        await asyncio.sleep(0.001)
    rest = [asyncio.create_task(collect(engine, r)) for r in requests[half:]]
    return [ids for ids, _, _ in await asyncio.gather(*first, *rest)]


@pytest.mark.asyncio
@pytest.mark.parametrize("runner", ["lean", "transformers"])
async def test_mixed_adapter_batch_matches_each_request_alone_and_peft(tiny_home: Path, reference, runner) -> None:
    requests = mixed_requests()
    engine = engine_for(tiny_home, ["tiny", "lora-a", "lora-b"], max_batch_size=16, runner=runner)
    await engine.start()
    try:
        alone = [(await collect(engine, r))[0] for r in requests]
        steps_before = engine.stats().extra["decode_steps"]
        batched = await run_staggered(engine, requests)
        steps = engine.stats().extra["decode_steps"] - steps_before
    finally:
        await engine.stop()

    assert batched == alone
    expected = [reference(None if r.model == "tiny" else r.model, r.prompt_ids, r.params.max_tokens)
                for r in requests]
    assert alone == expected
    # The batch really was shared: far fewer decode steps than tokens.
    assert steps < sum(len(ids) for ids in batched) / 2
    # And the adapters really change the output.
    assert reference("lora-a", requests[0].prompt_ids, 8) != reference(None, requests[0].prompt_ids, 8)
    assert reference("lora-b", requests[0].prompt_ids, 8) != reference(None, requests[0].prompt_ids, 8)


@pytest.mark.asyncio
async def test_slots_are_reused_when_requests_outnumber_them(tiny_home: Path, reference) -> None:
    requests = mixed_requests()[:9]
    engine = engine_for(tiny_home, ["tiny", "lora-a", "lora-b"], max_batch_size=3)
    await engine.start()
    try:
        batched = await run_staggered(engine, requests)
        assert engine.stats().running == 0
    finally:
        await engine.stop()
    assert batched == [reference(None if r.model == "tiny" else r.model, r.prompt_ids, r.params.max_tokens)
                       for r in requests]


@pytest.mark.asyncio
async def test_aliases_from_roost_toml_are_served(tiny_home: Path, tmp_path: Path) -> None:
    config = tmp_path / "roost.toml"
    config.write_text(f'[store]\nhome = "{tiny_home}"\n\n[aliases.writer]\nbase = "tiny"\nadapter = "lora-a"\n')
    engine = TransformersEngine(load_settings(config, env={}), dtype="float32")
    await engine.start()
    try:
        infos = {info.name: info for info in engine.models()}
        # 'default' is skipped: its base is not in this store.
        assert set(infos) == {"writer", "tiny", "lora-a"}
        assert (infos["writer"].base, infos["writer"].adapter) == ("tiny", "lora-a")
        assert infos["tiny"].adapter is None and infos["tiny"].max_context == 1024
        prompt = [5, 900, 31000]
        writer, _, _ = await collect(engine, greedy("w", "writer", prompt, 6))
        lora, _, _ = await collect(engine, greedy("l", "lora-a", prompt, 6))
        assert writer == lora
        assert engine.tokenizer("writer").eos_token == "<|im_end|>"
        with pytest.raises(UnknownModel, match="does not exist"):
            engine.tokenizer("nope")
    finally:
        await engine.stop()


@pytest.mark.asyncio
@pytest.mark.parametrize("runner", ["lean", "transformers"])
async def test_hot_loaded_adapter_answers_and_unloading_removes_it(tiny_home: Path, reference, tmp_path,
                                                                   runner) -> None:
    store = Store(tiny_home)
    engine = engine_for(tiny_home, ["tiny"], runner=runner)
    await engine.start()
    try:
        prompt = [17, 2048, 333, 9000]
        running = asyncio.create_task(collect(engine, greedy("long", "tiny", prompt, 40, ignore_eos=True)))
        info = await engine.load_adapter("hot", str(store.path("adapter", "lora-b")))
        assert (info.name, info.base, info.adapter) == ("hot", "tiny", "hot")
        assert "hot" in {m.name for m in engine.models()}
        hot, _, _ = await collect(engine, greedy("h", "hot", prompt, 10))
        assert hot == reference("lora-b", prompt, 10)
        # The request that ran through the load was not disturbed.
        assert (await running)[0] == reference(None, prompt, 40)

        with pytest.raises(InvalidRequest, match="already served"):
            await engine.load_adapter("hot", str(store.path("adapter", "lora-a")))
        with pytest.raises(InvalidRequest, match="adapter_config.json"):
            await engine.load_adapter("bad", str(tmp_path))

        # Unloading while a request still decodes on the adapter lets that request finish first.
        stream = engine.generate(greedy("late", "hot", prompt, 30, ignore_eos=True))
        first = await stream.__anext__()
        await engine.unload_adapter("hot")
        late = first.token_ids + [t for chunk in [c async for c in stream] for t in chunk.token_ids]
        assert late == reference("lora-b", prompt, 30)
        assert "hot" not in {m.name for m in engine.models()}
        with pytest.raises(UnknownModel, match="The model `hot` does not exist"):
            engine.generate(greedy("h2", "hot", prompt, 4))
        with pytest.raises(UnknownModel):
            await engine.unload_adapter("hot")
        # The base still answers as before.
        assert (await collect(engine, greedy("b", "tiny", prompt, 10)))[0] == reference(None, prompt, 10)
    finally:
        await engine.stop()


@pytest.mark.asyncio
async def test_closing_a_stream_frees_its_slot_and_a_full_queue_refuses_at_once(tiny_home: Path) -> None:
    engine = engine_for(tiny_home, ["tiny"], max_batch_size=1, max_queue=1)
    await engine.start()
    try:
        first = engine.generate(greedy("a", "tiny", [10, 11, 12], 500, ignore_eos=True))
        chunk = await first.__anext__()
        assert chunk.completion_tokens == 1 and chunk.finish_reason is None
        second = engine.generate(greedy("b", "tiny", [10, 11, 12], 5))
        with pytest.raises(QueueFull):
            engine.generate(greedy("c", "tiny", [10, 11, 12], 5))
        assert (engine.stats().running, engine.stats().waiting) == (1, 1)

        await second.aclose()
        assert engine.stats().waiting == 0
        await first.aclose()
        for _ in range(500):
            if engine.stats().running == 0:
                break
            await asyncio.sleep(0.01)
        assert engine.stats().running == 0
        assert engine.stats().extra["generated_tokens"] < 500  # it stopped decoding, not ran to the end
        # The freed slot serves the next request.
        ids, _, reason = await collect(engine, greedy("d", "tiny", [10, 11, 12], 3, ignore_eos=True))
        assert (len(ids), reason) == (3, "length")

        # Stopping the engine fails what still runs, rather than leaving its reader waiting.
        running = engine.generate(greedy("e", "tiny", [10, 11, 12], 500, ignore_eos=True))
        await running.__anext__()
    finally:
        await engine.stop()
    with pytest.raises(EngineError, match="stopped"):
        async for _ in running:
            pass


@pytest.mark.asyncio
async def test_seed_makes_sampling_reproducible_whatever_the_batch(tiny_home: Path) -> None:
    engine = engine_for(tiny_home, ["tiny", "lora-a"])
    await engine.start()
    try:
        prompt = [400, 401, 402, 403]

        def sampled(rid: str, seed: int | None, model: str = "tiny") -> GenerationRequest:
            params = SamplingParams(max_tokens=12, temperature=1.0, top_p=0.9, seed=seed, ignore_eos=True)
            return GenerationRequest(rid, model, prompt, params)

        alone = (await collect(engine, sampled("s1", 7)))[0]
        again = (await collect(engine, sampled("s2", 7)))[0]
        mates = [sampled(f"m{i}", None, ["tiny", "lora-a"][i % 2]) for i in range(5)]
        in_batch = await asyncio.gather(*(collect(engine, r) for r in [*mates[:3], sampled("s3", 7), *mates[3:]]))
        other_seed = (await collect(engine, sampled("s4", 8)))[0]
    finally:
        await engine.stop()
    assert len(alone) == 12
    assert alone == again == in_batch[3][0]
    assert other_seed != alone


@pytest.mark.asyncio
async def test_stop_strings_length_and_context_limit(tiny_home: Path, tokenizer) -> None:
    engine = engine_for(tiny_home, ["tiny"])
    await engine.start()
    try:
        prompt = [1200, 77, 5050]
        ids, text, reason = await collect(engine, greedy("full", "tiny", prompt, 24, ignore_eos=True))
        assert (len(ids), reason) == (24, "length")
        assert text == tokenizer.decode(ids, skip_special_tokens=True)

        # A stop string taken from the middle of that text: the output ends just before it.
        start = len(tokenizer.decode(ids[:8], skip_special_tokens=True))
        stop = text[start:start + 3]
        cut, cut_text, cut_reason = await collect(engine, greedy("stop", "tiny", prompt, 24, stop=(stop, "\x00zz")))
        assert cut_reason == "stop"
        assert cut_text == text[:text.index(stop)]
        assert stop not in cut_text and cut == ids[:len(cut)]

        with pytest.raises(ContextLengthExceeded, match="maximum context length is 1024 tokens") as err:
            engine.generate(greedy("big", "tiny", [5] * 1000, 100))
        assert "1100 tokens (1000 in the messages, 100 in the completion)" in str(err.value)
        with pytest.raises(InvalidRequest, match="empty"):
            engine.generate(greedy("empty", "tiny", [], 4))
        with pytest.raises(InvalidRequest, match="token ids"):
            engine.generate(greedy("oov", "tiny", [10**6], 4))
        with pytest.raises(UnknownModel):
            engine.generate(greedy("x", "missing", [5], 4))
    finally:
        await engine.stop()


class ForceEos:
    """A constraint that allows only EOS and one other token, and prefers EOS."""

    def __init__(self, eos: int, other: int) -> None:
        self.eos, self.other, self.seen = eos, other, []

    def mask(self, logits) -> None:
        keep = logits[[self.eos, self.other]].clone()
        logits.fill_(float("-inf"))
        logits[self.other] = keep[1]
        logits[self.eos] = 1e4

    def advance(self, token_id: int) -> None:
        self.seen.append(token_id)

    def is_terminated(self) -> bool:
        return False


class Spell:
    """A constraint that spells a fixed token sequence, then terminates."""

    def __init__(self, tokens: list[int]) -> None:
        self.tokens, self.pos = tokens, 0

    def mask(self, logits) -> None:
        value = logits[self.tokens[self.pos]].item()
        logits.fill_(float("-inf"))
        logits[self.tokens[self.pos]] = value

    def advance(self, token_id: int) -> None:
        assert token_id == self.tokens[self.pos]
        self.pos += 1

    def is_terminated(self) -> bool:
        return self.pos == len(self.tokens)


@pytest.mark.asyncio
async def test_constraints_min_tokens_and_ignore_eos(tiny_home: Path, tokenizer) -> None:
    eos, other = tokenizer.eos_token_id, 1500
    engine = engine_for(tiny_home, ["tiny"])
    await engine.start()
    try:
        async def run(constraint, **params) -> tuple[list[int], str]:
            request = GenerationRequest("c", "tiny", [300, 301], SamplingParams(temperature=0.0, **params), constraint)
            ids, _, reason = await collect(engine, request)
            return ids, reason

        assert await run(ForceEos(eos, other), max_tokens=10) == ([eos], "stop")
        assert await run(ForceEos(eos, other), max_tokens=10, min_tokens=3) == ([other] * 3 + [eos], "stop")
        assert await run(ForceEos(eos, other), max_tokens=5, ignore_eos=True) == ([other] * 5, "length")
        assert await run(Spell([42, 43, 44]), max_tokens=10) == ([42, 43, 44], "stop")
        # A grammar that only allows EOS while EOS is masked leaves no token: a clear error, not a hang.
        with pytest.raises(InvalidRequest, match="constraint"):
            await run(Spell([eos]), max_tokens=5, ignore_eos=True)
    finally:
        await engine.stop()


def test_text_stream_never_splits_characters_and_holds_back_stop_prefixes(tokenizer) -> None:
    text = "héllo 🙂 wörld, 東京 ok"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(ids) > len(text.split())  # some characters span several tokens

    stream, deltas = TextStream(tokenizer), []
    for token in ids:
        stream.add(token)
        deltas.append(stream.take(final=False))
    deltas.append(stream.take(final=True))
    assert all("\ufffd" not in d for d in deltas)
    assert "".join(deltas) == text

    stream, deltas = TextStream(tokenizer, stop=("wörld",)), []
    for token in ids:
        searched = len(stream.text)
        stream.add(token)
        if stream.find_stop(searched):
            break
        deltas.append(stream.take(final=False))
        # Nothing that could begin the stop string ever leaves early.
        assert not "".join(deltas).endswith(("w", "wö"))
    deltas.append(stream.take(final=True))
    assert "".join(deltas) == "héllo 🙂 "


def test_bad_engine_settings_are_refused(tiny_home: Path) -> None:
    from roost.errors import ConfigError

    with pytest.raises(ConfigError, match="dtype 'float8'"):
        TransformersEngine(load_settings(env={}), dtype="float8")
    with pytest.raises(ConfigError, match="max_batch_size"):
        engine_for(tiny_home, ["tiny"], max_batch_size=0)
    with pytest.raises(ConfigError, match="runner 'fast'"):
        engine_for(tiny_home, ["tiny"], runner="fast")
    with pytest.raises(ConfigError, match="threads"):
        TransformersEngine(load_settings(env={}), threads=0)


@pytest.mark.e2e
@pytest.mark.asyncio
async def test_default_model_knows_the_capital_of_france(default_model_home: Path) -> None:
    from roost.prompts import encode, render_chat

    engine = TransformersEngine(load_settings(env={"ROOST_HOME": str(default_model_home)}), ["default"])
    await engine.start()
    try:
        tok = engine.tokenizer("default")
        prompt = encode(tok, render_chat(tok, [{"role": "user", "content": "What is the capital of France?"}]))
        _, text, reason = await collect(engine, greedy("paris", "default", prompt, 40))
    finally:
        await engine.stop()
    assert "Paris" in text
    assert reason == "stop"


def test_sample_rows_follows_temperature_top_p_and_masks() -> None:
    import torch

    from roost.backend.transformers_engine import sample_rows

    logits = torch.tensor([[2.0, 1.0, 0.0, float("-inf")]])
    draws = 6000
    generator = torch.Generator().manual_seed(0)
    counts = torch.zeros(4)
    for _ in range(draws):
        counts[sample_rows(logits, [0.5], [1.0], [generator])[0]] += 1
    expected = torch.softmax(logits[0] / 0.5, dim=-1)
    assert counts[3] == 0  # probability 0 (a constraint's mask): never drawn
    torch.testing.assert_close(counts / draws, expected, atol=0.02, rtol=0)

    # At temperature 1, top_p 0.7 keeps tokens 0 and 1 (the mass before token 1 is 0.665 < 0.7), never 2.
    counts = torch.zeros(4)
    for _ in range(2000):
        counts[sample_rows(logits, [1.0], [0.7], [generator])[0]] += 1
    assert counts[2] == counts[3] == 0 and counts[1] > 0
    # top_p so small that only the most likely token stays.
    assert {sample_rows(logits, [1.0], [0.01], [generator])[0] for _ in range(50)} == {0}

    # A flat vocabulary of 1000: the nucleus needs more than the first candidates, so the whole row is sorted.
    flat = torch.zeros(1, 1000)
    seen = {sample_rows(flat, [1.0], [0.9], [generator])[0] for _ in range(3000)}
    assert len(seen) > 800 and max(seen) < 1000


def test_sample_rows_draws_each_row_from_its_own_generator() -> None:
    import torch

    from roost.backend.transformers_engine import sample_rows

    logits = torch.randn(5, 300, generator=torch.Generator().manual_seed(3))

    def draw(rows: list[int], seeds: list[int], steps: int = 20) -> list[list[int]]:
        gens = [torch.Generator().manual_seed(s) for s in seeds]
        return [sample_rows(logits[rows], [0.8] * len(rows), [0.95] * len(rows), gens) for _ in range(steps)]

    together = draw([0, 1, 2, 3, 4], [10, 11, 12, 13, 14])
    alone = draw([2], [12])
    assert [step[2] for step in together] == [step[0] for step in alone]
    assert len({step[2] for step in together}) > 1  # it really samples


def test_fresh_rows_are_grouped_by_prompt_length_and_cached_rows_keep_their_slots() -> None:
    from types import SimpleNamespace

    from roost.backend.transformers_engine import _group_fresh_rows

    def row(name: str, length: int, cached: int = 0) -> SimpleNamespace:
        return SimpleNamespace(name=name, cached=cached, request=SimpleNamespace(prompt_ids=[0] * length))

    # Slots 0-1 decode; from slot 2 on: a fresh head, a row halfway through its prompt, fresh rows of mixed lengths.
    rows = [row("d0", 9, 9), row("d1", 9, 9), row("head", 100), row("partial", 900, 512), row("a", 30),
            row("b", 110), row("c", 200), row("d", 95)]
    _group_fresh_rows(rows, 2)
    # The head stays; the other fresh rows follow by closeness to its 100 tokens: d (95), b (110), a (30), c (200).
    assert [r.name for r in rows] == ["d0", "d1", "head", "partial", "d", "b", "a", "c"]
