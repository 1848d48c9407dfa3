"""Training on tiny models (fp32, a few steps): SFT, resume, DPO, reward model, GRPO, the recipe and the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from finetune.tasks import arithmetic
from roost.errors import RoostError
from roost.store import Store


class Killed(Exception):
    """Stands in for a kill -9 half-way through a run."""


@pytest.fixture
def settings(tiny_model_dir: Path):
    """Settings whose (per-test) store holds the tiny model as base 'tiny'."""
    from roost.config import load_settings
    from roost.models import pull

    loaded = load_settings()
    pull(str(tiny_model_dir), name="tiny", settings=loaded, progress=False)
    return loaded


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def sft_rows(n: int = 16) -> list[dict[str, Any]]:
    return [{k: row[k] for k in ("prompt", "completion")} for row in arithmetic.generate(n, seed=0)]


def pair_rows(n: int = 8) -> list[dict[str, Any]]:
    rows = arithmetic.generate(n, seed=3)
    return [{"prompt": r["prompt"], "chosen": r["completion"],
             "rejected": [{"role": "assistant", "content": f"<answer>{r['answer'] + 1}</answer>"}]} for r in rows]


def callback(**hooks: Any) -> Any:
    from transformers import TrainerCallback

    return type("Hooks", (TrainerCallback,), hooks)()


def probe_ids(tokenizer: Any) -> Any:
    import torch

    from roost.prompts import encode, render_chat

    return torch.tensor([encode(tokenizer, render_chat(tokenizer, sft_rows(1)[0]["prompt"]))])


def test_sft_lowers_loss_changes_weights_and_the_stored_adapter_reloads(settings, tiny_model_dir: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import finetune

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    ids = probe_ids(tokenizer)
    seen: dict[str, Any] = {}

    def on_train_end(self: Any, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        with torch.no_grad():
            seen["logits"] = model(input_ids=ids).logits

    data = write_jsonl(Path("train.jsonl"), sft_rows(16))
    result = finetune.sft(base="tiny", data=data, name="sft-tiny", max_steps=6, batch_size=4, lr=1e-2, dtype="fp32",
                          save_steps=0, progress=False, settings=settings,
                          callbacks=[callback(on_train_end=on_train_end)])

    losses = [row["loss"] for row in map(json.loads, (result.run_dir / "metrics.jsonl").open()) if "loss" in row]
    assert len(losses) == 6 and losses[-1] < losses[0] - 0.3
    entry = Store(settings.home).get("adapter", "sft-tiny")
    assert entry is not None and entry.lineage["method"] == "sft" and entry.lineage["base"] == "tiny"
    assert (result.run_dir / "loss.png").stat().st_size > 0
    assert not (result.run_dir / "checkpoints").exists()

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    with torch.no_grad():
        before = base(input_ids=ids).logits
        reloaded = PeftModel.from_pretrained(base, str(entry.path))(input_ids=ids).logits
    assert not torch.allclose(before, reloaded, atol=1e-3)  # training changed the weights
    torch.testing.assert_close(reloaded, seen["logits"], rtol=0, atol=1e-5)


def test_loss_is_completion_only_and_padding_free_matches_padded(settings, tiny_model_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from finetune.base import resolve_base
    from finetune.config import SFTConfig
    from finetune.data import prepare
    from finetune.runs import RunDir
    from finetune.sft import build_trainer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    data = write_jsonl(Path("train.jsonl"), sft_rows(3))
    rows = prepare(data, "sft", tokenizer, max_length=512).rows
    base = resolve_base("tiny", settings)

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    nll, count = 0.0, 0
    with torch.no_grad():
        for row in rows:
            logits = model(input_ids=torch.tensor([row["input_ids"]])).logits[0, :-1]
            labels = torch.tensor(row["labels"][1:])
            scored = labels != -100
            nll += torch.nn.functional.cross_entropy(logits[scored], labels[scored], reduction="sum").item()
            count += int(scored.sum())

    for padding_free in (True, False):
        config = SFTConfig(base="tiny", data=data, name=f"pf-{padding_free}", dtype="fp32", padding_free=padding_free,
                           progress=False)
        trainer = build_trainer(config, base, tokenizer, rows, None, RunDir(Store(settings.home), config.name))
        batch = trainer.data_collator([trainer.train_dataset[i] for i in range(3)])
        assert ("position_ids" in batch) == padding_free
        with torch.no_grad():
            loss = trainer.compute_loss(trainer.model, batch)
        assert loss.item() == pytest.approx(nll / count, abs=1e-5)


def test_resume_after_a_kill_gives_bitwise_equal_weights(settings) -> None:
    from safetensors.torch import load_file

    import finetune

    data = write_jsonl(Path("train.jsonl"), sft_rows(16))
    common = {"base": "tiny", "data": data, "max_steps": 4, "batch_size": 4, "lr": 5e-3, "dtype": "fp32",
              "save_steps": 2, "progress": False, "settings": settings}
    straight = finetune.sft(name="straight", **common)

    def on_step_begin(self: Any, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == 2:  # checkpoint-2 is complete; die before step 3
            raise Killed()

    with pytest.raises(Killed):
        finetune.sft(name="killed", callbacks=[callback(on_step_begin=on_step_begin)], **common)
    store = Store(settings.home)
    assert store.get("adapter", "killed") is None  # a failed run writes nothing to the store
    assert sorted(p.name for p in (store.runs_dir / "killed" / "checkpoints").iterdir()) == ["checkpoint-2"]

    with pytest.raises(RoostError, match="unfinished run: pass --resume"):
        finetune.sft(name="killed", **common)
    resumed = finetune.sft(name="killed", resume=True, **common)

    a = load_file(straight.path / "adapter_model.safetensors")
    b = load_file(resumed.path / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    steps = [row["step"] for row in map(json.loads, (resumed.run_dir / "metrics.jsonl").open()) if "loss" in row]
    assert steps == [1, 2, 3, 4]


def test_a_checkpoint_cut_short_is_never_taken_for_a_complete_one(settings, monkeypatch) -> None:
    from transformers import Trainer

    import finetune

    def crash(self: Any, output_dir: str) -> None:  # dies after the weights and optimizer, before the RNG state
        raise Killed()

    monkeypatch.setattr(Trainer, "_save_rng_state", crash)
    data = write_jsonl(Path("train.jsonl"), sft_rows(4))
    with pytest.raises(Killed):
        finetune.sft(base="tiny", data=data, name="cut", max_steps=2, batch_size=2, dtype="fp32", save_steps=1,
                     progress=False, settings=settings)
    checkpoints = Store(settings.home).runs_dir / "cut" / "checkpoints"
    assert [p.name for p in checkpoints.iterdir()] == [".partial"]
    with pytest.raises(RoostError, match="--resume: no complete checkpoint"):
        finetune.sft(base="tiny", data=data, name="cut", max_steps=2, batch_size=2, dtype="fp32", save_steps=1,
                     progress=False, settings=settings, resume=True)


def test_dpo_reference_log_probs_are_the_base_models(settings, tiny_model_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    import finetune
    from finetune.base import resolve_base
    from finetune.config import DPOConfig
    from finetune.data import prepare
    from finetune.dpo import build_trainer
    from finetune.runs import RunDir

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    data = write_jsonl(Path("pairs.jsonl"), pair_rows(4))
    rows = prepare(data, "preference", tokenizer, max_length=512).rows
    base_model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)

    def base_logps(prompt: list[int], answer: list[int]) -> float:
        with torch.no_grad():
            logits = base_model(input_ids=torch.tensor([prompt + answer])).logits[0, len(prompt) - 1:-1]
        return logits.log_softmax(-1).gather(-1, torch.tensor(answer)[:, None]).sum().item()

    expected = torch.tensor([[base_logps(r["prompt_ids"], r[k]) for r in rows] for k in ("chosen_ids", "rejected_ids")])
    config = DPOConfig(base="tiny", data=data, name="dpo-probe", dtype="fp32", precompute_ref=True, progress=False)
    trainer = build_trainer(config, resolve_base("tiny", settings), tokenizer, rows, None,
                            RunDir(Store(settings.home), "dpo-probe"))
    precomputed = torch.tensor([trainer.train_dataset["ref_chosen_logps"], trainer.train_dataset["ref_rejected_logps"]])
    torch.testing.assert_close(precomputed, expected, rtol=0, atol=1e-3)

    with torch.no_grad():  # move the policy away from the base: the reference must not follow
        for name, param in trainer.model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.05)
    examples = [trainer.train_dataset[i] for i in range(4)]
    batch = trainer.data_collator(examples)
    assert "packed_input_ids" in batch  # each prompt runs once, in a [prompt, chosen, rejected] row
    ref = torch.stack(trainer.compute_ref_log_probs(trainer.model, batch))
    torch.testing.assert_close(ref, expected, rtol=0, atol=1e-3)

    def policy_logps(batch: dict[str, Any]) -> Any:
        labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
        inputs = {k: v for k, v in batch.items() if k not in ("completion_mask", "ref_chosen_logps",
                                                               "ref_rejected_logps")}
        with torch.no_grad():
            return trainer.model(**inputs, labels=labels, fused_lm_head=True).log_probs.sum(-1)

    packed = policy_logps(batch)
    assert (packed - expected.flatten()).abs().max() > 0.1
    torch.testing.assert_close(packed, policy_logps(DataCollatorForPreference(tokenizer.pad_token_id)(examples)),
                               rtol=0, atol=1e-4)  # the same scores as TRL's two-rows-per-pair layout

    result = finetune.dpo(base="tiny", data=data, name="dpo-tiny", max_steps=2, batch_size=2, dtype="fp32",
                          save_steps=0, progress=False, settings=settings)
    assert Store(settings.home).get("adapter", "dpo-tiny").lineage["method"] == "dpo"
    assert "rewards/margins" in result.metrics and (result.run_dir / "reward.png").is_file()


def test_reward_model_trains_and_scores_completions(settings) -> None:
    import finetune
    from finetune.config import GRPOConfig
    from finetune.grpo import reward_functions

    data = write_jsonl(Path("pairs.jsonl"), pair_rows(8))
    result = finetune.reward(base="tiny", data=data, name="rm-tiny", max_steps=3, batch_size=4, lr=1e-3,
                             dtype="fp32", save_steps=0, progress=False, settings=settings)
    entry = Store(settings.home).get("adapter", "rm-tiny")
    assert entry.lineage["method"] == "reward" and "accuracy" in result.metrics

    config = GRPOConfig(data=data, name="unused", reward_model="rm-tiny")
    (scorer,) = reward_functions(config, settings)
    prompt = "<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n<|im_start|>assistant\n"
    scores = scorer(prompts=[prompt, prompt], completions=["2 + 3 = 5\n<answer>5</answer>", "<answer>6</answer>"])
    assert len(scores) == 2 and scores[0] != scores[1]
    with pytest.raises(RoostError, match="is not a reward model"):
        reward_functions(GRPOConfig(data=data, name="unused", reward_model="tiny"), settings)


def test_grpo_raises_the_mean_reward(settings, tiny_model_dir: Path) -> None:
    import torch
    from safetensors.torch import load_file

    import finetune

    # Reward: the share of sampled tokens whose embedding lies on one side of a random hyperplane. Sampling
    # among the 8 likeliest tokens lets a tiny random model reorder them within a few steps.
    embeddings = load_file(tiny_model_dir / "model.safetensors")["model.embed_tokens.weight"]
    direction = torch.randn(embeddings.shape[1], generator=torch.Generator().manual_seed(0))
    liked = set((embeddings @ direction > 0).nonzero().flatten().tolist())

    def share_liked(prompts: list[str], completions: list[str], completion_ids: list[list[int]], **kw: Any):
        return [sum(t in liked for t in ids) / len(ids) for ids in completion_ids]

    prompts = [{"prompt": [{"role": "user", "content": f"Say something about {i}."}]} for i in range(12)]
    result = finetune.grpo(base="tiny", data=write_jsonl(Path("prompts.jsonl"), prompts), name="grpo-tiny",
                           reward_fn=share_liked, max_steps=6, batch_size=2, num_generations=4, top_k=8, lr=5e-3,
                           max_completion_length=4, dtype="fp32", save_steps=0, progress=False, settings=settings)
    rewards = [row["reward"] for row in map(json.loads, (result.run_dir / "metrics.jsonl").open()) if "reward" in row]
    assert len(rewards) == 6
    assert sum(rewards[-2:]) / 2 > rewards[0] + 0.25
    assert Store(settings.home).get("adapter", "grpo-tiny").lineage["method"] == "grpo"


def test_cli_sft_hot_loads_into_the_backend_which_serves_the_in_process_greedy_output(
        settings, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from typer.testing import CliRunner

    from finetune.data import sha256_of
    from roost.backend.app import create_app
    from roost.backend.transformers_engine import TransformersEngine
    from roost.cli import app
    from tests.servers import uvicorn_thread

    data = write_jsonl(Path("train.jsonl"), sft_rows(8))
    Path("sft.toml").write_text('base = "tiny"\ndata = "train.jsonl"\nname = "from-file"\nlr = 0.01\n')
    runner = CliRunner()
    engine = TransformersEngine(settings, ["tiny"], dtype="float32", max_batch_size=2, threads=1)
    with uvicorn_thread(create_app(engine, settings)) as url:
        monkeypatch.setenv("ROOST_URL", url)
        out = runner.invoke(app, ["finetune", "sft", "--config", "sft.toml", "--name", "cli-tiny", "--max-steps", "3",
                                  "--batch-size", "4", "--dtype", "fp32", "--no-progress", "--save-steps", "0"])
        assert out.exit_code == 0, out.output
        prompt = sft_rows(1)[0]["prompt"]
        served = httpx.post(f"{url}/v1/chat/completions", timeout=60, json={
            "model": "cli-tiny", "messages": prompt, "temperature": 0, "max_tokens": 8}).json()
    assert "wrote adapter 'cli-tiny' (sft on tiny)" in out.output
    assert f'hot-loaded into the backend at {url} as model "cli-tiny"' in out.output

    entry = Store(settings.home).get("adapter", "cli-tiny")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32),
                                      str(entry.path))
    ids = probe_ids(tokenizer)
    with torch.no_grad():
        greedy = model.generate(input_ids=ids, max_new_tokens=8, do_sample=False)[0, ids.shape[1]:]
    assert served["choices"][0]["message"]["content"] == tokenizer.decode(greedy, skip_special_tokens=True)

    lineage = entry.lineage
    assert lineage["data_sha256"] == sha256_of(data) and lineage["config"]["lr"] == 0.01
    assert lineage["config"]["max_steps"] == 3 and "train_loss" in lineage["metrics"] and lineage["created"]
    assert json.loads((entry.path / "roost-finetune.json").read_text())["name"] == "cli-tiny"

    listed = runner.invoke(app, ["models", "list", "--kind", "adapter"])
    assert "cli-tiny" in listed.output and "method=sft" in listed.output

    again = runner.invoke(app, ["finetune", "sft", "--config", "sft.toml", "--name", "cli-tiny"])
    assert again.exit_code == 1 and "adapter 'cli-tiny' already exists" in again.output


def test_cli_bad_data_fails_with_file_line_rule_and_writes_nothing(settings) -> None:
    from typer.testing import CliRunner

    from roost.cli import app

    write_jsonl(Path("bad.jsonl"), [sft_rows(1)[0], {"messages": [{"role": "user", "content": "hi"}]}])
    out = CliRunner().invoke(app, ["finetune", "sft", "--base", "tiny", "--data", "bad.jsonl", "--name", "bad"])
    assert out.exit_code == 1
    assert "error: bad.jsonl:2: last-not-assistant:" in out.output
    assert Store(settings.home).list("adapter") == [] and not (Store(settings.home).runs_dir / "bad").exists()

    recipe = CliRunner().invoke(app, ["finetune", "recipe", "sft-then-dpo", "--base", "tiny"])
    assert recipe.exit_code == 1 and "unknown recipe 'sft-then-dpo'; available: sft-then-grpo" in recipe.output


def test_recipe_sft_then_grpo_runs_both_stages_and_scores_the_dev_set(settings) -> None:
    import finetune

    report = finetune.sft_then_grpo(base="tiny", name="arith-tiny", sft_steps=2, grpo_steps=1, batch_size=4,
                                    num_generations=2, max_completion_length=4, dev_rows=2, dtype="fp32",
                                    progress=False, settings=settings)
    assert set(report.accuracy) == {"base", "sft", "grpo"} and report.dev_rows == 2
    store = Store(settings.home)
    assert store.get("adapter", "arith-tiny-sft").lineage["method"] == "sft"
    final = store.get("adapter", "arith-tiny").lineage
    assert final["method"] == "grpo" and final["parent_adapter"] == "arith-tiny-sft" and final["base"] == "tiny"
