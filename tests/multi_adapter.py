"""Real backends for multi-agent tests: a tiny base with a LoRA adapter per agent, or the default model.

The store holds base ``tiny`` (a random Llama from tests/conftest.py) and one
adapter per requested alias, each with its own random LoRA weights, registered
through :meth:`roost.store.Store.writing` with ``{"base": "tiny"}``. roost.toml
maps ``default`` to the base and each alias to its adapter; the transformers
engine serves them all from one copy of the base under uvicorn on an ephemeral
port.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from roost.backend.traces import Trace, TraceStore
from roost.config import DEFAULT_BASE, load_settings
from roost.models import pull
from roost.store import Store
from tests.conftest import make_tiny_model
from tests.servers import uvicorn_thread


@dataclass(frozen=True)
class AdapterBackend:
    """Where the running backend is (``url``), its store (``home``), config file and trace store."""

    url: str
    home: Path
    config: Path | None
    traces: TraceStore

    def calls(self, caller: str | None = None) -> list[Trace]:
        self.traces.flush()
        return self.traces.list(caller=caller, limit=10_000)

    def tool_call_problems(self, caller_prefix: str) -> tuple[int, list[str]]:
        """(tool calls made, problems) over the traced calls of ``caller_prefix`` that offered tools.

        A problem is a call written as text that does not parse (``<tool_call>`` left in
        the content), a call to a tool that was not offered, or arguments that do not
        validate against the offered tool's JSON schema.
        """
        import json

        import jsonschema

        from roost.backend.constrain import parse_tool_calls

        made, problems = 0, []
        for trace in self.calls():
            tools = trace.request.get("tools")
            if not (trace.caller or "").startswith(caller_prefix) or not tools:
                continue
            schemas = {t["function"]["name"]: t["function"].get("parameters", {}) for t in tools}
            calls, content = parse_tool_calls(trace.output or "")
            if "<tool_call>" in (content or ""):
                problems.append(f"{trace.caller}: unparsed call in {content!r}")
            for call in calls:
                made += 1
                name, arguments = call["function"]["name"], json.loads(call["function"]["arguments"])
                if name not in schemas:
                    problems.append(f"{trace.caller}: called {name}, which was not offered")
                    continue
                try:
                    jsonschema.validate(arguments, schemas[name])
                except jsonschema.ValidationError as exc:
                    problems.append(f"{trace.caller}: {name}({arguments}) breaks its schema: {exc.message}")
        return made, problems

    def use(self, monkeypatch: Any) -> None:
        """Point roost (clients, graphs, agents) at this backend and store for the rest of the test."""
        monkeypatch.setenv("ROOST_URL", self.url)
        monkeypatch.setenv("ROOST_HOME", str(self.home))
        if self.config is not None:
            monkeypatch.setenv("ROOST_CONFIG", str(self.config))


def make_store(root: Path, aliases: Sequence[str]) -> tuple[Path, Path]:
    """A store with base ``tiny`` and adapter ``{alias}-lora`` per alias; returns (home, roost.toml)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    home = root / "home"
    settings = load_settings(env={"ROOST_HOME": str(home)})
    pull(str(make_tiny_model(root / "tiny-src")), name="tiny", settings=settings, progress=False)
    store = Store(home)
    lines = ['[aliases.default]', 'base = "tiny"', ""]
    for seed, alias in enumerate(aliases):
        torch.manual_seed(1000 + seed)
        model = AutoModelForCausalLM.from_pretrained(store.path("base", "tiny"), dtype=torch.float32)
        # init_lora_weights=False: B is random too, so each adapter really changes what the model says.
        lora = LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
        with store.writing("adapter", f"{alias}-lora", {"base": "tiny"}) as out:
            get_peft_model(model, lora).save_pretrained(out)
        lines += [f"[aliases.{alias}]", 'base = "tiny"', f'adapter = "{alias}-lora"', ""]
    config = root / "roost.toml"
    config.write_text("\n".join(lines), encoding="utf-8")
    return home, config


@contextmanager
def adapter_backend(root: Path, aliases: Sequence[str]) -> Iterator[AdapterBackend]:
    """Build the store under ``root`` and serve every alias in it until the block ends."""
    home, config = make_store(root, aliases)
    with serve(home, config, dtype="float32") as backend:
        yield backend


@contextmanager
def default_model_backend(root: Path, default_model_home: Path) -> Iterator[AdapterBackend]:
    """Serve the real default model from a fresh store under ``root`` (its base linked, not copied)."""
    home = root / "home"
    (home / "bases").mkdir(parents=True)
    (home / "bases" / DEFAULT_BASE).symlink_to(default_model_home / "bases" / DEFAULT_BASE)
    with serve(home, None) as backend:
        yield backend


@contextmanager
def serve(home: Path, config: Path | None, dtype: str = "auto") -> Iterator[AdapterBackend]:
    """The transformers engine over every alias of ``config`` (or ``default``), under uvicorn on port 0."""
    from roost.backend.app import create_app
    from roost.backend.transformers_engine import TransformersEngine

    settings = load_settings(config, env={"ROOST_HOME": str(home)})
    traces = TraceStore(Store(home).traces_db)
    engine = TransformersEngine(settings, dtype=dtype, max_batch_size=4)
    with uvicorn_thread(create_app(engine, settings, traces=traces)) as url:
        yield AdapterBackend(url, home, config, traces)
