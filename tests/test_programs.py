"""The DSPy programs: their datasets, metrics and modules, run on dspy's DummyLM (no backend)."""

from __future__ import annotations

import importlib
import json
import random
from collections import Counter
from pathlib import Path

import dspy
import pytest
from dspy.utils.dummies import DummyLM
from dspy.utils.exceptions import AdapterParseError

from programs import classify, ner, paraphrase, qa, summarize, text2code, translate, transliterate
from programs.common import DATA_DIR, DataError, InputError, OutputError, Task
from programs.metrics import char_accuracy, chrf, exact_match, levenshtein, token_f1
from programs.sandbox import run_tests

PROGRAMS = [classify, ner, qa, translate, summarize, paraphrase, transliterate, text2code]


def ex(**fields) -> dspy.Example:
    return dspy.Example(**fields)


def pred(**fields) -> dspy.Prediction:
    return dspy.Prediction(**fields)


# datasets ------------------------------------------------------------------------------------


@pytest.mark.parametrize("program", PROGRAMS, ids=lambda p: p.__name__)
def test_every_dataset_loads_with_its_fields_and_enough_rows(program):
    task: Task = program.TASK
    train, dev = task.rows("train"), task.rows("dev")
    assert len(train) >= 100
    assert len(dev) >= (200 if task.name == "classify" else 30)
    for row in train + dev:
        for field in (*task.inputs, *task.labels):
            assert row[field] not in (None, "", []), (task.name, row)
    # dev measures the skill, not recall: no dev input also appears in train
    key = task.inputs[0]
    seen = {json.dumps(r[key]) for r in train}
    assert not [r for r in dev if json.dumps(r[key]) in seen]


def test_classification_labels_are_valid_and_balanced():
    for split in ("train", "dev"):
        counts = Counter(r["label"] for r in classify.TASK.rows(split))
        assert set(counts) == set(classify.LABELS) and len(counts) >= 3
        assert min(counts.values()) >= 0.15 * sum(counts.values())


def test_ner_tags_are_valid_bio_and_aligned():
    for row in ner.TASK.rows("train") + ner.TASK.rows("dev"):
        assert len(row["tokens"]) == len(row["tags"])
        assert set(row["tags"]) <= set(ner.TAGS)
        for i, tag in enumerate(row["tags"]):
            if tag.startswith("I-"):
                assert row["tags"][i - 1][2:] == tag[2:], row
    tags = Counter(t for r in ner.TASK.rows("dev") for t in r["tags"])
    assert all(tags[f"B-{kind}"] > 10 for kind in ("PER", "ORG", "LOC"))


def test_qa_answers_occur_verbatim_in_their_contexts():
    for row in qa.TASK.rows("train") + qa.TASK.rows("dev"):
        assert row["answer"] in row["context"], row
        assert row["answer"] not in row["question"]


def test_transliteration_references_follow_the_scheme():
    rows = transliterate.TASK.rows("train") + transliterate.TASK.rows("dev")
    assert all(transliterate.transliterate(r["cyrillic"]) == r["latin"] for r in rows)
    assert all(r["latin"].isascii() for r in rows)
    assert transliterate.transliterate("Щукин, Ёж и Юля") == "Shchukin, Yozh i Yulya"
    assert transliterate.transliterate("подъезд") == "podezd"


def test_translation_pairs_are_different_languages():
    rows = translate.TASK.rows("dev")
    assert all(r["english"] != r["french"] for r in rows)
    assert sum("é" in r["french"] or "è" in r["french"] or "ç" in r["french"] for r in rows) >= 5


def test_text2code_reference_solutions_pass_their_own_tests():
    rows = text2code.TASK.rows("train") + text2code.TASK.rows("dev")
    assert all(r["entry_point"] == text2code.entry_point(r["header"]) for r in rows)
    for row in random.Random(0).sample(rows, 4):  # each run is a subprocess: a sample keeps this fast
        assert all(run_tests(row["code"], row["entry_point"], row["tests"])), row["task"]


def test_build_script_reproduces_the_committed_files(tmp_path, monkeypatch):
    """programs/data/build.py is how the files were made: it must still make exactly them."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("roost_data_build", DATA_DIR / "build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    monkeypatch.setattr(build, "HERE", tmp_path)
    monkeypatch.setattr(build, "print", lambda *a, **k: None, raising=False)
    build.build_classify(random.Random(1000))
    build.build_transliterate(random.Random(1006))
    for name in ("classify.dev.jsonl", "transliterate.train.jsonl"):
        assert (tmp_path / name).read_bytes() == (DATA_DIR / name).read_bytes()


def test_a_malformed_row_is_reported_with_file_and_line(tmp_path, monkeypatch):
    import programs.common as common

    monkeypatch.setattr(common, "DATA_DIR", tmp_path)
    (tmp_path / "toy.dev.jsonl").write_text('{"text": "a", "label": "b"}\n{"text": "c"}\n')
    with pytest.raises(DataError, match=r"toy.dev.jsonl:2: missing field\(s\) label"):
        Task("toy", ("text",), ("label",)).rows("dev")
    (tmp_path / "toy.dev.jsonl").write_text('{"text": "a", "label": "b"}\nnot json\n')
    with pytest.raises(DataError, match=r"toy.dev.jsonl:2: not valid JSON"):
        Task("toy", ("text",), ("label",)).rows("dev")
    with pytest.raises(DataError, match="no such dataset file"):
        Task("toy", ("text",), ("label",)).rows("test")


def test_examples_mark_the_input_fields():
    example = qa.TASK.examples("dev", limit=1)[0]
    assert set(example.inputs().keys()) == {"context", "question"}
    assert set(example.labels().keys()) == {"answer"}


# metrics -------------------------------------------------------------------------------------


def test_text_metrics():
    assert chrf("le chat noir", "le chat noir") == 1.0
    assert chrf("le chien blanc", "le chat noir") < 0.5 < chrf("le chat noire", "le chat noir") < 1.0
    assert chrf("", "x") == 0.0
    assert token_f1("the red car", "a red car") == 1.0  # articles and case do not count
    assert token_f1("the red car", "a blue car") == pytest.approx(0.5)
    assert token_f1("blue", "red") == 0.0
    assert exact_match("The Arlen River.", "arlen river") == 1.0
    assert exact_match("Arlen", "Arlen River") == 0.0
    assert levenshtein("kitten", "sitting") == 3
    assert char_accuracy("Moskva", "Moskva") == 1.0
    assert char_accuracy("Moskwa", "Moskva") == pytest.approx(5 / 6)
    assert char_accuracy("something else entirely", "da") == 0.0


def test_classify_metric():
    gold = ex(text="I was charged twice", label="billing")
    assert classify.metric(gold, pred(label="billing")) == 1.0
    assert classify.metric(gold, pred(label="returns")) == 0.0


def test_ner_metric_scores_entity_tokens_and_handles_length_mismatch():
    gold = ex(tokens=["Maria", "Lopez", "lives", "in", "Paris", "."], tags=["B-PER", "I-PER", "O", "O", "B-LOC", "O"])
    assert ner.metric(gold, pred(tags=list(gold.tags))) == 1.0
    assert ner.metric(gold, pred(tags=["O"] * 6)) == 0.0
    partial = ner.metric(gold, pred(tags=["B-PER", "O", "O", "O", "B-ORG", "O"]))
    assert partial == pytest.approx(0.4)  # precision 1/2 (B-ORG is wrong), recall 1/3
    assert ner.metric(gold, pred(tags=["B-PER", "I-PER"])) == pytest.approx(0.8)  # padded with O
    assert ner.metric(ex(tokens=["Hi", "."], tags=["O", "O"]), pred(tags=["O", "O"])) == 1.0
    assert ner.metric(gold, pred(tags="not a list")) == 0.0


def test_ner_entities_from_bio():
    tokens = ["Maria", "Lopez", "met", "Ivan", "at", "Acme", "Corporation", "."]
    tags = ["B-PER", "I-PER", "O", "B-PER", "O", "B-ORG", "I-ORG", "O"]
    assert ner.entities(tokens, tags) == [{"text": "Maria Lopez", "type": "PER"}, {"text": "Ivan", "type": "PER"},
                                          {"text": "Acme Corporation", "type": "ORG"}]
    assert ner.tokenize("Maria's trip to Rio de Janeiro, two-year plan.") == [
        "Maria", "'s", "trip", "to", "Rio", "de", "Janeiro", ",", "two-year", "plan", "."]


def test_qa_metrics():
    gold = ex(context="...", question="Which river?", answer="Arlen River")
    assert qa.metric(gold, pred(answer="the Arlen River")) == 1.0
    assert qa.exact(gold, pred(answer="Arlen River.")) == 1.0
    assert qa.metric(gold, pred(answer="Arlen")) == pytest.approx(2 / 3)
    assert qa.metric(gold, pred(answer="Oakhollow")) == 0.0


def test_generation_metrics():
    gold = ex(english="The water is cold.", french="L'eau est froide.")
    assert translate.metric(gold, pred(french="L'eau est froide.")) == 1.0
    assert translate.metric(gold, pred(french="The water is cold.")) < 0.3
    gold = ex(document="...", summary="Veltrix launched the Aria, a tablet for students.")
    assert summarize.metric(gold, pred(summary="Veltrix launched the Aria, a tablet for students.")) == 1.0
    assert summarize.metric(gold, pred(summary="It rained.")) == 0.0
    gold = ex(sentence="Paul wrote the report.", paraphrase="The report was written by Paul.")
    assert paraphrase.metric(gold, pred(paraphrase="The report was written by Paul.")) == 1.0
    assert paraphrase.metric(gold, pred(paraphrase="paul wrote the report")) == 0.0  # a copy scores nothing
    gold = ex(cyrillic="Щука", latin="Shchuka")
    assert transliterate.metric(gold, pred(latin="Shchuka")) == 1.0
    assert transliterate.exact(gold, pred(latin="Schuka")) == 0.0
    assert transliterate.metric(gold, pred(latin="Schuka")) == pytest.approx(6 / 7)


def test_text2code_metric_runs_the_tests():
    gold = ex(task="Return x times 3.", header="def scale(x: int) -> int", entry_point="scale",
              tests=[{"args": [2], "expected": 6}, {"args": [0], "expected": 0}])
    assert text2code.metric(gold, pred(code="```python\ndef scale(x):\n    return 3 * x\n```")) == 1.0
    assert text2code.metric(gold, pred(code="def scale(x):\n    return x + x")) == 0.0
    assert text2code.pass_fraction(gold, pred(code="def scale(x):\n    return x + x")) == 0.5
    assert text2code.metric(gold, pred(code="def other(x):\n    return 3 * x")) == 0.0
    assert text2code.metric(gold, pred(code="this is not python")) == 0.0


def test_sandbox_contains_bad_code():
    tests = [{"args": [1], "expected": 1}]
    assert run_tests("def f(x):\n    while True:\n        pass", "f", tests, timeout=1.0) == [False]
    assert run_tests("import os\ndef f(x):\n    return 1", "f", tests) == [False]
    assert run_tests("def f(x):\n    return len(open('/etc/hostname').read())", "f", tests) == [False]
    assert run_tests("import math\ndef f(x):\n    return math.floor(x + 0.5)", "f", tests) == [True]
    assert run_tests("def f(x):\n    return True", "f", tests) == [False]  # True is not 1 here


# modules on DummyLM ----------------------------------------------------------------------------

ANSWERS = {
    classify: ("I was charged twice.", {"label": "billing"}),
    ner: ("Maria works in Paris.", {"tags": ["B-PER", "O", "O", "B-LOC", "O"]}),
    qa: ({"context": "Oakhollow is on the Arlen River.", "question": "Which river?"}, {"answer": "Arlen River"}),
    translate: ("The water is cold.", {"french": "L'eau est froide."}),
    summarize: ("A storm hit. Schools closed.", {"summary": "A storm closed schools."}),
    paraphrase: ("Paul wrote the report.", {"paraphrase": "The report was written by Paul."}),
    transliterate: ("Москва", {"latin": "Moskva"}),
    text2code: ({"task": "Return x times 3.", "header": "def scale(x: int) -> int"},
                {"code": "def scale(x):\n    return 3 * x"}),
}


@pytest.mark.parametrize("program", PROGRAMS, ids=lambda p: p.__name__)
@pytest.mark.parametrize("adapter", ["json", "chat"])
def test_run_returns_the_outputs_and_streams_steps(program, adapter):
    given, answer = ANSWERS[program]
    lm = DummyLM([answer], adapter=dspy.JSONAdapter() if adapter == "json" else dspy.ChatAdapter())
    steps = []
    result = program.run(given, lm=lm, adapter=adapter, on_step=steps.append)
    for key, value in answer.items():
        assert result[key] == value
    assert [s["kind"] for s in steps] == ["lm", "predict"]
    assert steps[1]["output"] == answer
    assert all(s["seconds"] >= 0 for s in steps)


def test_json_adapter_sends_the_label_set_as_a_schema():
    lm = DummyLM([{"label": "account"}], adapter=dspy.JSONAdapter())
    classify.run("I forgot my password.", lm=lm)
    prompt = json.dumps(lm.history[-1]["messages"])
    assert all(label in prompt for label in classify.LABELS)


def test_chat_adapter_parse_failures_surface_without_a_json_fallback():
    lm = DummyLM([{"nothing": "useful"}] * 3, adapter=dspy.ChatAdapter())
    with pytest.raises(OutputError, match="ChatAdapter could not read label from the model's reply") as info:
        classify.run("My parcel is late.", lm=lm, adapter="chat")
    assert isinstance(info.value.__cause__, AdapterParseError)
    assert len(lm.history) == 1  # one call: no hidden second try through the JSON adapter


def test_run_refuses_bad_input_and_unknown_options():
    with pytest.raises(InputError, match="context, question"):
        qa.run("just a string")
    with pytest.raises(InputError, match="missing question"):
        qa.run({"context": "x"})
    with pytest.raises(InputError, match="unknown option.*colour"):
        classify.run("hi", colour="red")
    with pytest.raises(InputError, match="adapter must be one of json, chat"):
        classify.run("hi", lm=DummyLM([{"label": "billing"}]), adapter="xml")


def test_a_configured_dspy_lm_is_used_when_no_model_is_named():
    lm = DummyLM([{"label": "shipping"}], adapter=dspy.JSONAdapter())
    with dspy.context(lm=lm):
        assert classify.run("Where is my parcel?") == {"label": "shipping"}
    assert len(lm.history) == 1


def test_evaluate_scores_a_program_on_its_dev_set():
    devset = classify.TASK.examples("dev", limit=6)
    lm = DummyLM({e.text: {"label": e.label if i % 2 else "billing"} for i, e in enumerate(devset)},
                 adapter=dspy.JSONAdapter())
    expected = sum(1 for i, e in enumerate(devset) if i % 2 or e.label == "billing") / len(devset)
    with dspy.context(lm=lm, adapter=dspy.JSONAdapter()):
        result = dspy.Evaluate(devset=devset, metric=classify.metric, num_threads=1)(classify.Classify())
    assert result.score == pytest.approx(100 * expected, abs=0.01)  # Evaluate rounds to 2 places


def test_every_program_module_imports_without_the_backend():
    for program in PROGRAMS:
        module = importlib.reload(program)
        assert isinstance(module.DESCRIPTION, str) and callable(module.run) and callable(module.metric)


def test_a_roost_model_is_greedy_with_the_task_budget_unless_told_otherwise(monkeypatch, tmp_path):
    import roost.clients

    made = []
    monkeypatch.setattr(roost.clients, "dspy_lm", lambda name, **kw: made.append((name, kw)) or
                        DummyLM([{"label": "billing"}] * 3, adapter=dspy.JSONAdapter()))
    classify.run("I was charged twice.")
    classify.run("I was charged twice.", model="writer", temperature=0.7, max_tokens=10, caller="app/triage")
    Path("roost.toml").write_text('[aliases.warm]\nbase = "b"\ntemperature = 0.9\n')  # the test's own cwd
    classify.run("I was charged twice.", model="warm")
    assert made[0][0] == "default"
    assert made[0][1]["temperature"] == 0.0 and made[0][1]["max_tokens"] == classify.TASK.max_tokens
    assert made[0][1]["caller"] == "programs.classify"
    assert made[1][0] == "writer" and made[1][1]["temperature"] == 0.7 and made[1][1]["max_tokens"] == 10
    assert made[1][1]["caller"] == "app/triage"
    assert "temperature" not in made[2][1]  # the alias's own default applies on the backend


def test_finetune_rows_are_the_prompts_the_program_sends(tmp_path):
    from programs.common import finetune_rows
    from programs.export import main as export

    rows = finetune_rows(classify, "dev", limit=2)
    first = classify.TASK.rows("dev", limit=1)[0]
    assert [m["role"] for m in rows[0]["messages"]] == ["system", "user", "assistant"]
    assert json.loads(rows[0]["messages"][-1]["content"]) == {"label": first["label"]}
    lm = DummyLM([{"label": first["label"]}], adapter=dspy.JSONAdapter())
    classify.run(first["text"], lm=lm)
    assert lm.history[-1]["messages"] == rows[0]["messages"][:-1]  # training prompt == inference prompt

    out = tmp_path / "ner.jsonl"
    assert export(["ner", "--split", "dev", "--limit", "3", "--out", str(out)]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 3
    assert json.loads(lines[0]["messages"][-1]["content"])["tags"] == ner.TASK.rows("dev", limit=1)[0]["tags"]
