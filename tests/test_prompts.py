from __future__ import annotations

import json

import pytest

from roost.prompts import (
    PromptError,
    encode,
    normalize_messages,
    render_chat,
    render_prompt_completion,
)

TOOLS = [{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}]


def test_render_chat_uses_the_model_template(tokenizer) -> None:
    text = render_chat(tokenizer, [{"role": "user", "content": "hi"}])
    assert text.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    assert text == tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    ids = encode(tokenizer, text)
    assert ids[0] == tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert tokenizer.decode(ids) == text


def test_text_parts_and_developer_role(tokenizer) -> None:
    msgs = [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
    ]
    assert normalize_messages(msgs) == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "ab"}]


def test_tools_are_described_for_templates_without_tools(tokenizer) -> None:
    text = render_chat(tokenizer, [{"role": "user", "content": "2+3?"}], tools=TOOLS)
    assert "<tools>" in text and '"name": "add"' in text and "<tool_call>" in text
    assert text.index("<tools>") < text.index("2+3?")


def test_tool_calls_and_results_become_text(tokenizer) -> None:
    msgs = [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "2+3?"},
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "add", "arguments": '{"a": 2}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "5"},
    ]
    out = normalize_messages(msgs, TOOLS)
    assert out[0]["role"] == "system" and out[0]["content"].startswith("sys\n\n")
    call = out[2]["content"]
    assert call.startswith("<tool_call>") and json.loads(call[len("<tool_call>"):-len("</tool_call>")]) == {
        "name": "add", "arguments": {"a": 2}}
    assert out[3] == {"role": "user", "content": "<tool_response>\n5\n</tool_response>"}


@pytest.mark.parametrize(
    ("messages", "words"),
    [
        ([], "non-empty list"),
        ([{"role": "wizard", "content": "x"}], "messages[0].role must be one of"),
        ([{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}], "messages[0].content[0]"),
        ([{"role": "user", "content": 5}], "must be a string"),
        (["hello"], "messages[0] must be an object"),
    ],
)
def test_bad_messages(messages, words: str) -> None:
    with pytest.raises(PromptError, match=words.replace("[", r"\[").replace("]", r"\]")):
        normalize_messages(messages)


def test_prompt_completion_split_is_the_served_prompt(tokenizer) -> None:
    prompt = [{"role": "user", "content": "Say hi"}]
    completion = [{"role": "assistant", "content": "hi"}]
    p, c = render_prompt_completion(tokenizer, prompt, completion)
    assert p == render_chat(tokenizer, prompt)
    assert c == "hi<|im_end|>\n"
    assert render_prompt_completion(tokenizer, "raw ", "text") == ("raw ", "text")
    with pytest.raises(PromptError, match="both be text"):
        render_prompt_completion(tokenizer, "raw", completion)
