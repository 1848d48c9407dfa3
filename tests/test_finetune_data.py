"""finetune.data and finetune.config: every bad-data rule, completion-only labels, config files and flags."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from finetune.config import DPOConfig, SFTConfig, build_config
from finetune.data import RULES, DataError, prepare
from roost.errors import ConfigError, RoostError

USER = {"role": "user", "content": "What is 2 + 3?"}
ASSISTANT = {"role": "assistant", "content": "2 + 3 = 5"}
GOOD_SFT = {"messages": [USER, ASSISTANT]}
GOOD_PAIR = {"prompt": [USER], "chosen": [ASSISTANT], "rejected": [{"role": "assistant", "content": "7"}]}


def write_rows(path: Path, *rows: object) -> Path:
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# One bad row per rule: (data kind, the row as JSON or raw text, max_length).
BAD_ROWS = {
    "invalid-json": ("sft", '{"messages": [', 512),
    "not-an-object": ("sft", [USER, ASSISTANT], 512),
    "unknown-format": ("sft", {"text": "plain text is not a supported SFT format"}, 512),
    "missing-key": ("preference", {"prompt": [USER], "chosen": [ASSISTANT]}, 512),
    "bad-type": ("sft", {"messages": [USER, {"role": "assistant", "content": 5}]}, 512),
    "empty-messages": ("sft", {"messages": []}, 512),
    "non-alternating": ("sft", {"messages": [USER, USER, ASSISTANT]}, 512),
    "last-not-assistant": ("sft", {"messages": [USER, ASSISTANT, USER]}, 512),
    "last-not-user": ("prompt", {"prompt": [USER, ASSISTANT]}, 512),
    "empty-prompt": ("sft", {"prompt": "  ", "completion": "5"}, 512),
    "empty-completion": ("sft", {"messages": [USER, {"role": "assistant", "content": ""}]}, 512),
    "chosen-equals-rejected": ("preference", {"prompt": [USER], "chosen": [ASSISTANT], "rejected": [ASSISTANT]}, 512),
    "too-long": ("sft", {"messages": [USER, {"role": "assistant", "content": "five " * 200}]}, 128),
}
GOOD = {"sft": GOOD_SFT, "preference": GOOD_PAIR, "prompt": {"prompt": [USER], "answer": 5}}


def test_every_rule_has_a_bad_row() -> None:
    assert set(BAD_ROWS) == set(RULES) - {"template"}  # no valid template renders turns out of order


@pytest.mark.parametrize("rule", sorted(BAD_ROWS))
def test_bad_row_names_file_line_and_rule(rule: str, tokenizer, tmp_path: Path) -> None:
    kind, bad, max_length = BAD_ROWS[rule]
    path = write_rows(tmp_path / "rows.jsonl", GOOD[kind], bad, GOOD[kind])

    with pytest.raises(DataError) as caught:
        prepare(path, kind, tokenizer, max_length=max_length)
    assert str(caught.value).startswith(f"{path}:2: {rule}: ")
    assert isinstance(caught.value, RoostError)

    kept = prepare(path, kind, tokenizer, max_length=max_length, skip_invalid=True)
    assert len(kept.rows) == 2
    assert dict(kept.skipped) == {rule: 1}
    assert f"skipped 1 invalid ({rule} 1)" in kept.summary()


def test_skip_invalid_counts_each_rule_and_blank_lines_are_ignored(tokenizer, tmp_path: Path) -> None:
    path = write_rows(tmp_path / "rows.jsonl", GOOD_SFT, "", "not json", {"messages": []}, "[1]", GOOD_SFT)
    prepared = prepare(path, "sft", tokenizer, max_length=512, skip_invalid=True)
    assert len(prepared.rows) == 2
    assert dict(prepared.skipped) == {"invalid-json": 1, "empty-messages": 1, "not-an-object": 1}
    assert [p.line for p in prepared.problems] == [3, 4, 5]

    with pytest.raises(DataError, match=r":3: invalid-json: .*2 more invalid row\(s\): empty-messages 1, "
                                        r"not-an-object 1; fix the rows or pass --skip-invalid"):
        prepare(path, "sft", tokenizer, max_length=512)


def test_no_valid_rows_and_missing_file_are_errors(tokenizer, tmp_path: Path) -> None:
    path = write_rows(tmp_path / "rows.jsonl", "{}")
    with pytest.raises(DataError, match="no valid rows"):
        prepare(path, "sft", tokenizer, max_length=512, skip_invalid=True)
    with pytest.raises(DataError, match="no such data file"):
        prepare(tmp_path / "absent.jsonl", "sft", tokenizer, max_length=512)


def test_preference_rows_are_not_sft_rows(tokenizer, tmp_path: Path) -> None:
    path = write_rows(tmp_path / "pairs.jsonl", GOOD_PAIR)
    with pytest.raises(DataError, match=r"unknown-format: .*preference rows are for `roost finetune dpo`"):
        prepare(path, "sft", tokenizer, max_length=512)


def test_prompt_tokens_carry_minus_100_and_completions_are_served_text(tokenizer, tmp_path: Path) -> None:
    from roost.prompts import encode, render_chat

    path = write_rows(tmp_path / "rows.jsonl", GOOD_SFT, {"prompt": "Q: 2+3?\nA:", "completion": " 5"})
    conversation, text = prepare(path, "sft", tokenizer, max_length=512).rows

    served_prompt = encode(tokenizer, render_chat(tokenizer, [USER]))
    n = len(served_prompt)
    assert conversation["input_ids"][:n] == served_prompt  # exactly the prompt the backend encodes
    assert conversation["labels"][:n] == [-100] * n
    assert conversation["labels"][n:] == conversation["input_ids"][n:]
    assert tokenizer.decode(conversation["labels"][n:]) == "2 + 3 = 5<|im_end|>\n"

    masked = [label == -100 for label in text["labels"]]
    assert masked == [True] * masked.index(False) + [False] * (len(masked) - masked.index(False))
    kept = [t for t in text["labels"] if t != -100]
    assert tokenizer.decode(kept) == " 5" + tokenizer.eos_token  # text completions learn to stop


def test_multi_turn_conversations_train_every_assistant_turn(tokenizer, tmp_path: Path) -> None:
    second = {"role": "assistant", "content": "6 + 1 = 7"}
    system = {"role": "system", "content": "Be brief."}
    row = {"messages": [system, USER, ASSISTANT, {"role": "user", "content": "And 6 + 1?"}, second]}
    (prepared,) = prepare(write_rows(tmp_path / "rows.jsonl", row), "sft", tokenizer, max_length=512).rows
    trained = tokenizer.decode([t for t in prepared["labels"] if t != -100])
    assert trained == "2 + 3 = 5<|im_end|>\n6 + 1 = 7<|im_end|>\n"
    assert "Be brief" in tokenizer.decode(prepared["input_ids"])


def test_preference_rows_share_the_rendered_prompt(tokenizer, tmp_path: Path) -> None:
    (pair,) = prepare(write_rows(tmp_path / "pairs.jsonl", GOOD_PAIR), "preference", tokenizer, max_length=512).rows
    assert tokenizer.decode(pair["prompt_ids"]).endswith("<|im_start|>assistant\n")
    assert tokenizer.decode(pair["chosen_ids"]) == "2 + 3 = 5<|im_end|>\n"
    assert tokenizer.decode(pair["rejected_ids"]) == "7<|im_end|>\n"


def test_prompt_rows_render_and_keep_reward_columns(tokenizer, tmp_path: Path) -> None:
    row = {"prompt": [USER], "completion": [ASSISTANT], "answer": 5}
    (prepared,) = prepare(write_rows(tmp_path / "p.jsonl", row), "prompt", tokenizer, max_length=512).rows
    assert prepared["answer"] == 5 and "completion" not in prepared
    assert prepared["prompt"].endswith("<|im_start|>assistant\n")
    with pytest.raises(DataError, match="too-long: .* with 500 completion tokens"):
        prepare(tmp_path / "p.jsonl", "prompt", tokenizer, max_length=512, completion_room=500)


def test_config_file_with_flag_overrides(tmp_path: Path) -> None:
    toml = tmp_path / "sft.toml"
    toml.write_text('data = "train.jsonl"\nname = "from-file"\nepochs = 3\nlora-r = 8\n', encoding="utf-8")
    config = build_config(SFTConfig, toml, name="from-flag", epochs=None)
    assert (config.name, config.epochs, config.lora_r, config.data) == ("from-flag", 3, 8, Path("train.jsonl"))

    yaml_file = tmp_path / "dpo.yaml"
    yaml_file.write_text("data: pairs.jsonl\nname: d\nbeta: 0.3\n", encoding="utf-8")
    assert build_config(DPOConfig, yaml_file).beta == 0.3

    with pytest.raises(ConfigError, match="unknown key 'epoch' for SFTConfig"):
        build_config(SFTConfig, None, data="x", name="y", epoch=2)
    with pytest.raises(ConfigError, match="--name is required"):
        build_config(SFTConfig, None, data="x")
    with pytest.raises(ConfigError, match="--lr: Input should be greater than 0"):
        build_config(SFTConfig, None, data="x", name="y", lr=-1)
