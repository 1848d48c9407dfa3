"""Shared fixtures: an isolated store per test, tiny models from config, the real default model.

Nothing here touches the user's ROOST_HOME, roost.toml or caches: every test runs
with a temporary store and the hubs switched to offline mode.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

ASSETS = Path(__file__).parent / "assets"
TOKENIZER_DIR = ASSETS / "smollm2-tokenizer"

# Set before any test module imports litellm, dspy or huggingface_hub.
_SESSION_TMP = Path(tempfile.mkdtemp(prefix="roost-tests-"))
os.environ["ROOST_HOME"] = str(_SESSION_TMP / "home")
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
os.environ["DSPY_CACHEDIR"] = str(_SESSION_TMP / "dspy-cache")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.pop("ROOST_CONFIG", None)


@pytest.fixture(autouse=True)
def roost_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh store and working directory for every test; no roost.toml unless the test writes one."""
    home = tmp_path / "roost-home"
    monkeypatch.setenv("ROOST_HOME", str(home))
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    for var in ("ROOST_CONFIG", "ROOST_HOST", "ROOST_PORT", "ROOST_URL", "ROOST_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return home


@pytest.fixture(scope="session")
def tokenizer():
    """The default model's tokenizer (with its chat template), shipped in tests/assets."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(TOKENIZER_DIR)


def make_tiny_model(path: Path, *, seed: int = 0, hidden: int = 64, layers: int = 2) -> Path:
    """Save a random Llama with the default model's tokenizer to ``path``: a real HF model folder."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(TOKENIZER_DIR)
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024, tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama folder (2 layers, hidden 64), shared by the session: treat as read-only."""
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-llama")


@pytest.fixture(scope="session")
def default_model_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding the real embedded default model, pulled once per session (e2e tier)."""
    from roost.config import load_settings
    from roost.models import pull

    home = tmp_path_factory.mktemp("default-home")
    settings = load_settings(env={"ROOST_HOME": str(home)})
    pull(settings=settings, progress=False)
    return home
