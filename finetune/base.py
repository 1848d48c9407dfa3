"""The model a run starts from: ``--base NAME|PATH`` -> weights, tokenizer and the LoRA to train."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finetune.config import TrainConfig
from roost.config import Settings
from roost.errors import RoostError, StoreError
from roost.models import pull, resolve, sha256_file
from roost.store import Store, validate_name

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Base:
    """A base in the store and, when ``--base`` named an adapter, the adapter training continues from."""

    name: str
    path: Path
    adapter: str | None = None
    adapter_path: Path | None = None


def resolve_base(spec: str, settings: Settings) -> Base:
    """A store name or alias (via :func:`roost.models.resolve`), or a local model folder pulled into the store.

    A local folder is pulled first (under its folder name) so that the adapter's lineage names a base the
    backend can load.
    """
    folder = Path(spec).expanduser()
    if folder.is_dir():
        if (folder / "adapter_config.json").is_file():
            raise RoostError(f"--base {spec} is an adapter folder; name the adapter by its store name instead")
        name = folder.name.lower()
        existing = Store(settings.home).get("base", name) if _is_store_name(name) else None
        if existing is not None and existing.lineage.get("weights_sha256") not in (None, _weights_digest(folder)):
            raise StoreError(
                f"the store already holds a different base named '{name}'; pull {folder} under another name "
                f"(`roost pull {folder} --name NEW`) and pass --base NEW"
            )
        path = pull(str(folder), settings=settings, progress=False)
        return Base(path.name, path)
    resolved = resolve(spec, settings=settings)
    return Base(resolved.base, resolved.base_path, resolved.adapter, resolved.adapter_path)


def _is_store_name(name: str) -> bool:
    try:
        validate_name(name)
    except StoreError:
        return False
    return True


def _weights_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(folder.glob("*.safetensors")):
        digest.update(sha256_file(file).encode())
    return digest.hexdigest()


def load_tokenizer(base: Base) -> Any:
    """The base's tokenizer, with a pad token (its EOS when it has none)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base.path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def torch_dtype(config: TrainConfig) -> Any:
    """Weights dtype: bf16 for a frozen base under LoRA; fp32 master weights when every weight trains."""
    import torch

    return torch.bfloat16 if config.dtype == "bf16" and not config.full else torch.float32


def load_causal_lm(base: Base, config: TrainConfig) -> Any:
    """The base as a causal LM; with an adapter from ``--base``, that adapter (trainable, or merged for --full)."""
    from transformers import AutoModelForCausalLM

    quiet_progress(config.progress)
    model = AutoModelForCausalLM.from_pretrained(base.path, dtype=torch_dtype(config))
    if base.adapter_path is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(base.adapter_path), is_trainable=not config.full)
        if config.full:
            model = model.merge_and_unload()
        logger.info("continuing from adapter '%s' on base '%s'", base.adapter, base.name)
    return model


def quiet_progress(progress: bool) -> None:
    """With --no-progress, also silence the bars transformers and datasets draw while loading and mapping."""
    if progress:
        return
    import datasets
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()


def lora_config(config: TrainConfig, task_type: str = "CAUSAL_LM") -> Any:
    """LoRA on every linear layer but the LM head (PEFT's 'all-linear'), unless ``lora_targets`` lists modules."""
    from peft import LoraConfig

    targets: str | list[str] = config.lora_targets
    if targets != "all-linear":
        targets = [t.strip() for t in targets.split(",") if t.strip()]
    return LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=targets, task_type=task_type)


def peft_config_for(model: Any, config: TrainConfig, task_type: str = "CAUSAL_LM") -> Any:
    """The LoRA config TRL should wrap ``model`` with: None for --full, or when the model already is a PeftModel."""
    if config.full or hasattr(model, "peft_config"):
        return None
    return lora_config(config, task_type)
