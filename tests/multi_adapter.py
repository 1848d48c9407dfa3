"""A real backend for multi-agent tests: one tiny base, distinct random LoRA adapters, an alias per agent.

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

from roost.backend.traces import Trace, TraceStore
from roost.config import load_settings
from roost.models import pull
from roost.store import Store
from tests.conftest import make_tiny_model
from tests.servers import uvicorn_thread


@dataclass(frozen=True)
class AdapterBackend:
    """Where the running backend is (``url``), its store (``home``), config file and trace store."""

    url: str
    home: Path
    config: Path
    traces: TraceStore

    def calls(self, caller: str) -> list[Trace]:
        self.traces.flush()
        return self.traces.list(caller=caller, limit=1000)


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
    from roost.backend.app import create_app
    from roost.backend.transformers_engine import TransformersEngine

    home, config = make_store(root, aliases)
    settings = load_settings(config, env={"ROOST_HOME": str(home)})
    traces = TraceStore(Store(home).traces_db)
    engine = TransformersEngine(settings, dtype="float32", max_batch_size=4)
    with uvicorn_thread(create_app(engine, settings, traces=traces)) as url:
        yield AdapterBackend(url, home, config, traces)
