"""Runnable targets: discovery, roost.run() and `roost run`, on dspy's DummyLM (no backend)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import dspy
import pytest
from dspy.utils.dummies import DummyLM
from typer.testing import CliRunner

import roost
from roost.cli import app
from roost.targets import TargetError, describe_step, discover, parse_input, parse_options

PROGRAM_TARGETS = {"programs.classify", "programs.ner", "programs.qa", "programs.translate", "programs.summarize",
                   "programs.paraphrase", "programs.transliterate", "programs.text2code"}


@pytest.fixture
def user_targets(tmp_path, monkeypatch):
    """A package ``mytargets`` on sys.path with a good target, one without run(), and one returning a string."""
    package = tmp_path / "pkgs" / "mytargets"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "echo.py").write_text(textwrap.dedent('''
        DESCRIPTION = "Echo the input, one step per word."

        def run(input, *, on_step=None, shout=False, **options):
            if options:
                raise ValueError(f"unknown options {sorted(options)}")
            text = input if isinstance(input, str) else input["text"]
            for word in text.split():
                if on_step:
                    on_step({"kind": "word", "name": "echo", "output": word})
            return {"echo": text.upper() if shout else text}
    '''))
    (package / "norun.py").write_text('DESCRIPTION = "No run function here."\n')
    (package / "stringy.py").write_text('DESCRIPTION = "Breaks the convention."\n\ndef run(input, **kw):\n'
                                        '    return "not a dict"\n')
    (package / "needs_missing.py").write_text("import roost_no_such_dependency\n\ndef run(input, **kw):\n"
                                              "    return {}\n")
    monkeypatch.syspath_prepend(str(tmp_path / "pkgs"))
    return package


def test_discover_lists_every_program_without_importing_it():
    found = {t.name: t for t in discover()}
    assert PROGRAM_TARGETS <= set(found)
    assert not {"programs.common", "programs.metrics", "programs.sandbox"} & set(found)
    assert found["programs.classify"].description.startswith("Sentence classification")
    assert found["programs.classify"].path.name == "classify.py"


def test_discover_reads_other_roots(user_targets):
    names = {t.name for t in discover(("mytargets",))}
    assert names == {"mytargets.echo", "mytargets.stringy"}  # norun has no run(); needs_missing no DESCRIPTION


def test_run_a_user_target_streams_its_steps(user_targets):
    steps = []
    result = roost.run("mytargets.echo", input="hello small world", on_step=steps.append, shout=True)
    assert result == {"echo": "HELLO SMALL WORLD"}
    assert [s["output"] for s in steps] == ["hello", "small", "world"]
    assert roost.run("mytargets.echo", input={"text": "a dict"}) == {"echo": "a dict"}


def test_unknown_and_broken_targets_say_what_is_wrong(user_targets):
    with pytest.raises(TargetError, match="unknown target 'no.such.target'") as info:
        roost.run("no.such.target", input="x")
    assert "programs.classify" in str(info.value)  # the message lists what is available
    with pytest.raises(TargetError, match="unknown target 'programs.nosuch'"):
        roost.run("programs.nosuch", input="x")
    with pytest.raises(TargetError, match="not a dotted module name"):
        roost.run("programs/classify", input="x")
    with pytest.raises(TargetError, match="defines no run"):
        roost.run("mytargets.norun", input="x")
    with pytest.raises(TargetError, match="returned str; a target returns a dict"):
        roost.run("mytargets.stringy", input="x")
    with pytest.raises(TargetError, match="needs the module 'roost_no_such_dependency'"):
        roost.run("mytargets.needs_missing", input="x")
    with pytest.raises(TargetError, match="needs an input"):
        roost.run("mytargets.echo")


def test_roost_run_on_a_program_with_a_dummy_lm():
    lm = DummyLM([{"label": "returns"}], adapter=dspy.JSONAdapter())
    steps = []
    assert roost.run("programs.classify", input="I want to send the shoes back.", lm=lm,
                     on_step=steps.append) == {"label": "returns"}
    assert [s["kind"] for s in steps] == ["lm", "predict"]


def test_input_and_option_parsing():
    assert parse_input("plain text") == "plain text"
    assert parse_input(' {"context": "c", "question": "q"}') == {"context": "c", "question": "q"}
    with pytest.raises(TargetError, match="not a valid JSON object"):
        parse_input("{not json")
    assert parse_options(["temperature=0.2", "thread-id=abc", "approve=true", "note=a=b"]) == {
        "temperature": 0.2, "thread_id": "abc", "approve": True, "note": "a=b"}
    with pytest.raises(TargetError, match="KEY=VALUE"):
        parse_options(["temperature"])


def test_describe_step_is_one_short_line():
    line = describe_step({"kind": "lm", "name": "openai/default", "seconds": 1.234, "output": "a\nb " * 200})
    assert line.startswith("[lm] openai/default (1.23s): a b a b")
    assert "\n" not in line and len(line) < 220 and line.endswith("...")
    assert describe_step({"kind": "node", "name": "router", "error": "boom"}) == "[node] router: error: boom"


# the command line -----------------------------------------------------------------------------


def test_cli_unknown_target_lists_the_targets_and_exits_1():
    result = CliRunner().invoke(app, ["run", "no.such.target", "--input", "hello"])
    assert result.exit_code == 1
    assert "unknown target 'no.such.target'" in result.stderr
    assert all(name in result.stderr for name in PROGRAM_TARGETS)


def test_cli_runs_a_program_as_json_with_its_steps():
    lm = DummyLM([{"label": "technical"}], adapter=dspy.JSONAdapter())
    with dspy.context(lm=lm):  # a configured DSPy LM stands in for the backend
        result = CliRunner().invoke(app, ["run", "programs.classify", "--input", "The app crashes on start.",
                                          "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["target"] == "programs.classify"
    assert out["result"] == {"label": "technical"}
    assert [s["kind"] for s in out["steps"]] == ["lm", "predict"]
    assert "[lm] dummy" in result.stderr and "[predict] Predict" in result.stderr  # streamed as they happen
    assert "The app crashes on start." in lm.history[0]["messages"][-1]["content"]


def test_cli_reads_a_json_input_file_and_prints_a_single_field_plainly(tmp_path):
    path = tmp_path / "question.json"
    path.write_text(json.dumps({"context": "Oakhollow is on the Arlen River.", "question": "Which river?"}))
    lm = DummyLM([{"answer": "Arlen River"}], adapter=dspy.JSONAdapter())
    with dspy.context(lm=lm):
        result = CliRunner().invoke(app, ["run", "programs.qa", "--input-file", str(path)])
    assert result.exit_code == 0, result.output
    assert result.stdout == "Arlen River\n"


def test_cli_passes_options_and_reports_bad_ones(user_targets):
    result = CliRunner().invoke(app, ["run", "mytargets.echo", "--input", "hi there", "-o", "shout=true"])
    assert result.exit_code == 0 and result.stdout == "HI THERE\n"
    assert "[word] echo: hi" in result.stderr
    result = CliRunner().invoke(app, ["run", "programs.classify", "--input", "hi", "-o", "colour=red"])
    assert result.exit_code == 1 and "unknown option(s) colour" in result.stderr


def test_cli_needs_exactly_one_input():
    for args in ([], ["--input", "a", "--input-file", "b"]):
        result = CliRunner().invoke(app, ["run", "programs.classify", *args])
        assert result.exit_code == 1 and "exactly one of --input TEXT or --input-file FILE" in result.stderr
    result = CliRunner().invoke(app, ["run", "programs.classify", "--input-file", "/no/such/file"])
    assert result.exit_code == 1 and "cannot read --input-file /no/such/file" in result.stderr


def test_roost_run_is_lazy():
    code = "import sys, roost; roost.run; assert 'dspy' not in sys.modules and 'litellm' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# the real default model -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def default_backend(default_model_home, tmp_path_factory):
    from tests.multi_adapter import default_model_backend

    with default_model_backend(tmp_path_factory.mktemp("programs-e2e"), default_model_home) as backend:
        yield backend


@pytest.mark.e2e
def test_every_program_runs_on_the_default_model_with_no_fallback_or_parse_error(default_backend, monkeypatch):
    import importlib

    from dspy.utils.callback import BaseCallback

    default_backend.use(monkeypatch)
    adapters, errors = [], []

    class Parses(BaseCallback):
        def on_adapter_parse_start(self, call_id, instance, inputs):
            adapters.append(type(instance).__name__)

        def on_adapter_parse_end(self, call_id, outputs, exception=None):
            if exception is not None:
                errors.append(exception)

    for target in sorted(PROGRAM_TARGETS):
        program = importlib.import_module(target)
        row = program.TASK.rows("dev", limit=1)[0]
        given = {k: row[k] for k in program.TASK.inputs}
        text = given[program.TASK.inputs[0]] if target != "programs.ner" and len(given) == 1 else json.dumps(given)
        with dspy.context(callbacks=[Parses()]):
            result = CliRunner().invoke(app, ["run", target, "--input", text, "--json", "-o", f"caller=e2e/{target}"])
        assert result.exit_code == 0, (target, result.output)
        out = json.loads(result.stdout)["result"]
        assert set(program.TASK.labels) <= set(out), (target, out)
        (call,) = default_backend.calls(f"e2e/{target}")
        assert call.status == 200 and call.request["response_format"]["type"] == "json_schema"
    assert adapters == ["JSONAdapter"] * len(PROGRAM_TARGETS)  # one parse per program: no fallback, no retry
    assert errors == []
