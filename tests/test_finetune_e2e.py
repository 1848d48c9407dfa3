"""`roost finetune` on the real default model (e2e): every method and the recipe write an adapter that
`roost models list` shows and a running backend hot-loads and serves by its name.

Runs are tiny (1-2 steps of 2-4 short rows); they check the wiring end to end, not what the model learns
(benchmarks/finetune_quality.py and benchmarks/classify_quality.py measure that).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from finetune.tasks import arithmetic
from roost.store import Store

pytestmark = pytest.mark.e2e

QUESTION = [{"role": "user", "content": "What is 2 + 3?"}]


@pytest.fixture(scope="module")
def backend(default_model_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The backend on the default model's store, over a socket (the CLI finds it by ROOST_URL and hot-loads)."""
    from roost.backend.app import create_app
    from roost.backend.traces import TraceStore
    from roost.backend.transformers_engine import TransformersEngine
    from roost.config import load_settings
    from tests.servers import uvicorn_thread

    settings = load_settings(env={"ROOST_HOME": str(default_model_home)})
    engine = TransformersEngine(settings, ["default"], max_batch_size=4)
    traces = TraceStore(tmp_path_factory.mktemp("e2e-finetune") / "traces.db")
    with uvicorn_thread(create_app(engine, settings, traces=traces)) as url:
        yield url


@pytest.fixture
def cli(default_model_home: Path, backend: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``cli(*args)``: the output of ``roost ARGS`` on the default model's store, exit code 0 asserted."""
    from typer.testing import CliRunner

    from roost.cli import app

    monkeypatch.setenv("ROOST_HOME", str(default_model_home))
    monkeypatch.setenv("ROOST_URL", backend)
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps table cells at the default 80 columns

    def run(*args: str) -> str:
        out = CliRunner().invoke(app, list(args))
        assert out.exit_code == 0, out.output
        return out.output

    return run


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def pairs(n: int) -> list[dict[str, Any]]:
    """Preference rows on the arithmetic task: the worked answer is chosen, an off-by-one answer rejected."""
    return [{"prompt": r["prompt"], "chosen": r["completion"],
             "rejected": [{"role": "assistant", "content": f"<answer>{r['answer'] + 1}</answer>"}]}
            for r in arithmetic.generate(n, seed=5)]


def problems(n: int) -> list[dict[str, Any]]:
    """GRPO rows: the prompt and the ``answer`` column the arithmetic reward reads."""
    return [{"prompt": r["prompt"], "answer": r["answer"]} for r in arithmetic.generate(n, seed=6)]


def assert_listed_and_served(cli: Any, backend: str, name: str, method: str, output: str) -> None:
    """``name`` is a stored adapter of ``method``, was hot-loaded, and the backend answers as it."""
    assert f"hot-loaded into the backend at {backend} as model \"{name}\"" in output
    listed = [line for line in cli("models", "list", "--kind", "adapter").splitlines() if f" {name} " in line]
    assert len(listed) == 1 and f"method={method}" in listed[0], listed
    reply = httpx.post(f"{backend}/v1/chat/completions", timeout=120,
                       json={"model": name, "messages": QUESTION, "max_tokens": 4, "temperature": 0})
    assert reply.status_code == 200, reply.text
    assert reply.json()["model"] == name and reply.json()["usage"]["completion_tokens"] >= 1


def test_cli_sft_on_the_default_model(cli: Any, backend: str, default_model_home: Path) -> None:
    rows = [{k: r[k] for k in ("prompt", "completion")} for r in arithmetic.generate(8, seed=4)]
    write_jsonl(Path("train.jsonl"), rows)
    out = cli("finetune", "sft", "--data", "train.jsonl", "--name", "e2e-sft", "--max-steps", "2", "--batch-size", "4",
              "--no-progress", "--save-steps", "0")
    assert "wrote adapter 'e2e-sft' (sft on smollm2-135m-instruct)" in out
    entry = Store(default_model_home).get("adapter", "e2e-sft")
    assert entry.lineage["base"] == "smollm2-135m-instruct" and entry.lineage["metrics"]["train_loss"] > 0
    assert_listed_and_served(cli, backend, "e2e-sft", "sft", out)


def test_cli_dpo_on_the_default_model(cli: Any, backend: str) -> None:
    write_jsonl(Path("pairs.jsonl"), pairs(4))
    out = cli("finetune", "dpo", "--data", "pairs.jsonl", "--name", "e2e-dpo", "--max-steps", "2", "--batch-size", "2",
              "--no-progress", "--save-steps", "0")
    assert "wrote adapter 'e2e-dpo' (dpo on smollm2-135m-instruct)" in out
    assert_listed_and_served(cli, backend, "e2e-dpo", "dpo", out)


def test_cli_grpo_with_a_reward_function_on_the_default_model(cli: Any, backend: str) -> None:
    write_jsonl(Path("problems.jsonl"), problems(2))
    out = cli("finetune", "grpo", "--data", "problems.jsonl", "--name", "e2e-grpo", "--reward",
              "finetune.tasks.arithmetic:correct", "--max-steps", "1", "--batch-size", "1", "--num-generations", "2",
              "--max-completion-length", "8", "--no-progress", "--save-steps", "0")
    assert "wrote adapter 'e2e-grpo' (grpo on smollm2-135m-instruct)" in out
    assert_listed_and_served(cli, backend, "e2e-grpo", "grpo", out)


def test_cli_reward_model_then_grpo_with_it_on_the_default_model(cli: Any, backend: str,
                                                                   default_model_home: Path) -> None:
    write_jsonl(Path("pairs.jsonl"), pairs(4))
    out = cli("finetune", "reward", "--data", "pairs.jsonl", "--name", "e2e-rm", "--max-steps", "2", "--batch-size",
              "2", "--no-progress", "--save-steps", "0")
    assert "wrote adapter 'e2e-rm' (reward on smollm2-135m-instruct)" in out
    assert "hot-loaded" not in out  # a reward model scores text; it is no chat model to serve
    listed = [line for line in cli("models", "list", "--kind", "adapter").splitlines() if " e2e-rm " in line]
    assert len(listed) == 1 and "method=reward" in listed[0], listed

    # Asked to serve it anyway, the backend refuses with a 400 naming the adapter, and keeps serving the rest.
    path = Store(default_model_home).get("adapter", "e2e-rm").path
    refused = httpx.post(f"{backend}/v1/load_lora_adapter", timeout=60, json={"lora_name": "e2e-rm",
                                                                              "lora_path": "e2e-rm"})
    assert refused.status_code == 400 and str(path) in refused.json()["error"]["message"], refused.text
    unknown = httpx.post(f"{backend}/v1/chat/completions", timeout=60,
                         json={"model": "e2e-rm", "messages": QUESTION, "max_tokens": 4})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"
    still = httpx.post(f"{backend}/v1/chat/completions", timeout=60,
                       json={"model": "default", "messages": QUESTION, "max_tokens": 4})
    assert still.status_code == 200 and still.json()["usage"]["completion_tokens"] >= 1

    write_jsonl(Path("problems.jsonl"), problems(2))
    out = cli("finetune", "grpo", "--data", "problems.jsonl", "--name", "e2e-rlhf", "--reward-model", "e2e-rm",
              "--max-steps", "1", "--batch-size", "1", "--num-generations", "2", "--max-completion-length", "8",
              "--no-progress", "--save-steps", "0")
    assert "wrote adapter 'e2e-rlhf' (grpo on smollm2-135m-instruct)" in out
    assert Store(default_model_home).get("adapter", "e2e-rlhf").lineage["config"]["reward_model"] == "e2e-rm"
    assert_listed_and_served(cli, backend, "e2e-rlhf", "grpo", out)


def test_cli_recipe_sft_then_grpo_on_the_default_model(cli: Any, backend: str) -> None:
    out = cli("finetune", "recipe", "sft-then-grpo", "--name", "e2e-arith", "--sft-steps", "1", "--grpo-steps", "1",
              "--batch-size", "4", "--num-generations", "2", "--max-completion-length", "8", "--dev-rows", "2",
              "--no-progress")
    assert "wrote adapter 'e2e-arith-sft' (sft on smollm2-135m-instruct)" in out
    assert "wrote adapter 'e2e-arith' (grpo on smollm2-135m-instruct)" in out
    assert "dev accuracy on 2 problems: base " in out
    listed = [line for line in cli("models", "list", "--kind", "adapter").splitlines() if " e2e-arith-sft " in line]
    assert len(listed) == 1 and "method=sft" in listed[0], listed
    assert_listed_and_served(cli, backend, "e2e-arith", "grpo", out)
