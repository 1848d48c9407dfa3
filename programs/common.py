"""What every DSPy program in programs/ shares: its data, its LM, and the runnable-target ``run``.

A program module defines a Signature, a Module, a metric and a ``TASK`` (a :class:`Task`
naming its data files and fields); :func:`run_program` does the rest of the
runnable-target convention (see :mod:`roost.targets`) for it: it picks the LM, runs the
module under the JSON adapter, reports each LM call and predictor as a step, and
returns the output fields as a dict.

Example:
    >>> from programs import classify
    >>> examples = classify.TASK.examples("dev", limit=2)
    >>> sorted(examples[0].inputs().keys())
    ['text']
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import dspy
from dspy.utils.callback import BaseCallback
from dspy.utils.exceptions import AdapterParseError

from roost.errors import RoostError

logger = logging.getLogger(__name__)

DATA_DIR = Path(__file__).parent / "data"

Step = dict[str, Any]
OnStep = Callable[[Step], None]


class DataError(RoostError, ValueError):
    """A dataset file is missing or a row in it is malformed."""


class InputError(RoostError, ValueError):
    """The input given to a program does not have the fields it needs."""


class OutputError(RoostError):
    """The model's reply could not be read as the program's output fields."""


@dataclass(frozen=True)
class Task:
    """A program's dataset: ``programs/data/{name}.{split}.jsonl`` rows with these input and label fields.

    ``max_tokens`` is the default reply budget: the JSON of a right answer fits with room to spare, and a
    model that rambles is cut off there (a 135M model on 2 CPU cores writes ~5-20 tokens a second).
    """

    name: str
    inputs: tuple[str, ...]
    labels: tuple[str, ...]
    max_tokens: int = 256

    def path(self, split: str) -> Path:
        return DATA_DIR / f"{self.name}.{split}.jsonl"

    def rows(self, split: str, limit: int | None = None) -> list[dict[str, Any]]:
        """The rows of one split (``train`` or ``dev``), each checked to have every field.

        Raises:
            DataError: naming the file and line of a missing file, bad JSON or a missing field.
        """
        path = self.path(split)
        if not path.is_file():
            raise DataError(f"{path}: no such dataset file; splits are 'train' and 'dev'")
        rows = []
        with path.open(encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}:{number}: not valid JSON: {exc.msg}") from None
                if not isinstance(row, dict):
                    raise DataError(f"{path}:{number}: a row is a JSON object, not {type(row).__name__}")
                missing = [k for k in (*self.inputs, *self.labels) if k not in row]
                if missing:
                    raise DataError(f"{path}:{number}: missing field(s) {', '.join(missing)}")
                rows.append(row)
                if limit is not None and len(rows) >= limit:
                    break
        return rows

    def examples(self, split: str, limit: int | None = None) -> list[dspy.Example]:
        """The rows as ``dspy.Example`` objects with this task's input fields marked as inputs."""
        return [dspy.Example(**row).with_inputs(*self.inputs) for row in self.rows(split, limit)]

    def parse_input(self, value: str | dict[str, Any], target: str) -> dict[str, Any]:
        """A run() input as keyword arguments: a dict with the input fields, or a string for the first one.

        Raises:
            InputError: naming the missing fields and showing the expected shape.
        """
        if isinstance(value, str):
            if len(self.inputs) == 1:
                return {self.inputs[0]: value}
            shape = json.dumps({k: "..." for k in self.inputs})
            raise InputError(f"{target} takes a JSON object with {', '.join(self.inputs)}, e.g. --input '{shape}'")
        if not isinstance(value, dict):
            raise InputError(f"{target} takes a string or a JSON object, not {type(value).__name__}")
        missing = [k for k in self.inputs if k not in value]
        if missing:
            raise InputError(f"{target}: the input is missing {', '.join(missing)} (it needs {', '.join(self.inputs)})")
        return {k: value[k] for k in self.inputs}


class StepReporter(BaseCallback):
    """A DSPy callback that turns each finished LM call and predictor into a step for ``on_step``."""

    def __init__(self, on_step: OnStep):
        self.on_step = on_step
        self._started: dict[str, tuple[float, str]] = {}

    def on_lm_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        self._started[call_id] = (time.perf_counter(), getattr(instance, "model", type(instance).__name__))

    def on_lm_end(self, call_id: str, outputs: Any, exception: BaseException | None = None) -> None:
        start, model = self._started.pop(call_id, (time.perf_counter(), "lm"))
        step: Step = {"kind": "lm", "name": model, "seconds": round(time.perf_counter() - start, 3)}
        if exception is not None:
            step["error"] = f"{type(exception).__name__}: {exception}"
        else:
            step["output"] = _lm_text(outputs)
        self.on_step(step)

    def on_module_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        if isinstance(instance, dspy.Predict):
            self._started[call_id] = (time.perf_counter(), type(instance).__name__)

    def on_module_end(self, call_id: str, outputs: Any, exception: BaseException | None = None) -> None:
        if call_id not in self._started:
            return  # not a predictor: the program's own forward() is the whole run, reported by the caller
        start, name = self._started.pop(call_id)
        step: Step = {"kind": "predict", "name": name, "seconds": round(time.perf_counter() - start, 3)}
        if exception is not None:
            step["error"] = f"{type(exception).__name__}: {exception}"
        else:
            step["output"] = dict(outputs.items()) if hasattr(outputs, "items") else outputs
        self.on_step(step)


def _lm_text(outputs: Any) -> str:
    first = outputs[0] if isinstance(outputs, list) and outputs else outputs
    if isinstance(first, dict):
        return str(first.get("text", first))
    return str(first)


def resolve_lm(options: dict[str, Any], caller: str, max_tokens: int = 256) -> dspy.BaseLM:
    """The LM a run uses: ``lm=`` (an LM object), else ``model=`` (a roost alias or name), else the
    LM configured with ``dspy.configure``, else the ``default`` alias through the roost backend.

    A roost model samples greedily (temperature 0) unless the options or the alias set a temperature.
    """
    if options.get("lm") is not None:
        return options["lm"]
    if options.get("model") is None and dspy.settings.lm is not None:
        return dspy.settings.lm
    from roost.clients import dspy_lm
    from roost.config import load_settings

    settings = load_settings()
    model = options.get("model") or "default"
    per_call = {k: options[k] for k in ("temperature", "max_tokens") if options.get(k) is not None}
    per_call.setdefault("max_tokens", max_tokens)
    alias = settings.alias(model)
    if "temperature" not in per_call and (alias is None or alias.temperature is None):
        # Greedy unless told otherwise: each task has one right answer, and the backend's default of 1.0
        # makes a 135M model's replies noise.
        per_call["temperature"] = 0.0
    return dspy_lm(model, caller=options.get("caller") or caller, settings=settings, **per_call)


ADAPTERS = ("json", "chat")


def make_adapter(name: str) -> dspy.Adapter:
    """``json``: JSONAdapter, whose structured output the roost backend enforces with a grammar, so a
    small model cannot produce unparseable output. ``chat``: ChatAdapter without the silent fallback
    to JSON, so a parse failure shows as one."""
    if name == "json":
        return dspy.JSONAdapter()
    if name == "chat":
        return dspy.ChatAdapter(use_json_adapter_fallback=False)
    raise InputError(f"adapter must be one of {', '.join(ADAPTERS)}, not {name!r}")


RUN_OPTIONS = ("lm", "model", "caller", "temperature", "max_tokens", "adapter")


def run_program(program: dspy.Module, task: Task, target: str, input: str | dict[str, Any], *,
                on_step: OnStep | None = None, **options: Any) -> dict[str, Any]:
    """Run ``program`` on one input as a roost target and return its output fields.

    Args:
        program: the DSPy module to call.
        task: its dataset description, used to read ``input``.
        target: the dotted target name, for messages and the default caller tag.
        input: a string (the first input field) or a dict of input fields.
        on_step: called with each LM call and predictor as it finishes.
        **options: ``lm`` (a dspy LM), ``model`` (roost alias or name), ``caller`` (trace tag),
            ``temperature``, ``max_tokens``, ``adapter`` (``json`` or ``chat``).

    Raises:
        InputError: for an unknown option or an input without the program's fields.
    """
    unknown = sorted(set(options) - set(RUN_OPTIONS))
    if unknown:
        raise InputError(f"{target}: unknown option(s) {', '.join(unknown)}; allowed: {', '.join(RUN_OPTIONS)}")
    kwargs = task.parse_input(input, target)
    lm = resolve_lm(options, caller=target, max_tokens=task.max_tokens)
    callbacks = [StepReporter(on_step)] if on_step else []
    with dspy.context(lm=lm, adapter=make_adapter(options.get("adapter") or "json"),
                      callbacks=[*dspy.settings.callbacks, *callbacks]):
        try:
            prediction = program(**kwargs)
        except AdapterParseError as exc:
            reply = " ".join(str(exc.lm_response or "").split())[:200]
            raise OutputError(f"{target}: {exc.adapter_name} could not read {', '.join(task.labels)} from the "
                              f"model's reply {reply!r}; a backend that constrains decoding to the output schema "
                              "prevents this, a fine-tuned adapter makes it rarer") from exc
    return {name: prediction[name] for name in task.labels}


def module_class(program: ModuleType) -> type[dspy.Module]:
    """The ``dspy.Module`` subclass a program module defines (each defines exactly one)."""
    classes = [v for v in vars(program).values()
               if isinstance(v, type) and issubclass(v, dspy.Module) and v.__module__ == program.__name__]
    if len(classes) != 1:
        raise TypeError(f"{program.__name__} defines {len(classes)} dspy.Module classes; a program defines one")
    return classes[0]


def finetune_rows(program: ModuleType, split: str = "train", *, adapter: str = "json",
                  limit: int | None = None) -> list[dict[str, Any]]:
    """A program's dataset as TRL conversational rows (``{"messages": [...]}``), in the exact prompt format
    the program sends at run time, with the reference outputs as the assistant turn.

    Training on these teaches a model the program's own prompt and reply format, so the
    fine-tuned adapter is used unchanged by ``roost run programs.<name> --model <adapter alias>``.
    """
    task: Task = program.TASK
    predictor = module_class(program)().predictors()[0]
    formatter = make_adapter(adapter)
    rows = []
    for row in task.rows(split, limit):
        inputs = {k: row[k] for k in task.inputs}
        outputs = {k: row[k] for k in task.labels}
        messages = formatter.format(predictor.signature, demos=[], inputs=inputs)
        reply = formatter.format_assistant_message_content(predictor.signature, outputs)
        rows.append({"messages": [*messages, {"role": "assistant", "content": reply}]})
    return rows
