"""Runnable targets: load a module by dotted name and run it, streaming its steps.

``roost.run("programs.classify", input="...")`` and ``roost run programs.classify
--input "..."`` both land here. A *target* is any importable module that follows
one convention:

``DESCRIPTION: str``
    One line saying what it does; shown when targets are listed.

``run(input, *, on_step=None, **options) -> dict``
    ``input`` is a string or a dict of named inputs (``--input`` text that is a
    JSON object arrives as a dict). ``on_step``, when given, is called with one
    dict per step as the step completes (an LM call, a predictor, a graph node,
    a tool call): ``kind`` and ``name`` always, ``output``, ``seconds`` and
    ``error`` when known. ``options`` are the target's own keyword options
    (``model``, ``temperature``, ...); an unknown one raises a
    :class:`~roost.errors.RoostError`. The result is a JSON-serializable dict.

Modules under ``programs/``, ``graphs/`` and ``agents/`` that follow it are
listed by :func:`discover`; any other importable module that follows it runs
too (``roost run mypackage.mytarget``).

Example:
    >>> import roost
    >>> roost.run("programs.classify", input="I was charged twice.", on_step=print)
    {'kind': 'lm', 'name': 'openai/default', 'seconds': 0.41, 'output': '{"label": "billing"}'}
    {'kind': 'predict', 'name': 'Predict', 'seconds': 0.42, 'output': {'label': 'billing'}}
    {'label': 'billing'}
"""

from __future__ import annotations

import ast
import importlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from types import ModuleType
from typing import Any

from roost.errors import RoostError

logger = logging.getLogger(__name__)

ROOTS = ("programs", "graphs", "agents")
"""The packages whose modules :func:`discover` lists."""

Step = dict[str, Any]
OnStep = Callable[[Step], None]

_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


class TargetError(RoostError, LookupError):
    """A target name that does not name a runnable module, or a target that broke the convention."""


@dataclass(frozen=True)
class TargetInfo:
    """A discovered target: its dotted name, its DESCRIPTION and its source file."""

    name: str
    description: str
    path: Path


def discover(roots: tuple[str, ...] = ROOTS) -> list[TargetInfo]:
    """The targets under ``roots``, sorted by name, found without importing them.

    A module counts when its source defines a top-level ``DESCRIPTION`` string and a
    top-level ``run`` function; modules whose names start with ``_`` are skipped.
    """
    found = []
    for root in roots:
        try:
            spec = find_spec(root)
        except (ImportError, ValueError):
            continue
        if spec is None or not spec.submodule_search_locations:
            continue
        for folder in spec.submodule_search_locations:
            for path in sorted(Path(folder).glob("*.py")):
                if path.stem.startswith("_"):
                    continue
                description = _convention(path)
                if description is not None:
                    found.append(TargetInfo(f"{root}.{path.stem}", description, path))
    return sorted(found, key=lambda t: t.name)


def _convention(path: Path) -> str | None:
    """The module's DESCRIPTION when its source follows the convention, else None."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, SyntaxError, UnicodeDecodeError) as exc:
        logger.warning("skipping %s while listing targets: %s", path, exc)
        return None
    description = None
    has_run = False
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "run":
            has_run = True
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            names = [t.id for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
                     if isinstance(t, ast.Name)]
            if "DESCRIPTION" in names and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                description = node.value.value
    return description if has_run and description is not None else None


def _listing() -> str:
    targets = discover()
    if not targets:
        return "no targets found under programs/, graphs/ or agents/"
    width = max(len(t.name) for t in targets)
    return "available targets:\n" + "\n".join(f"  {t.name:<{width}}  {t.description}" for t in targets)


def load(target: str) -> ModuleType:
    """Import the module ``target`` names and check that it follows the convention.

    Raises:
        TargetError: the name is malformed or names no module (the message lists the
            available targets), the module has no ``run``, or a dependency is missing.
    """
    if not isinstance(target, str) or not _DOTTED.fullmatch(target):
        raise TargetError(f"'{target}' is not a dotted module name like programs.classify\n{_listing()}")
    try:
        module = importlib.import_module(target)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if target == missing or target.startswith(missing + "."):
            raise TargetError(f"unknown target '{target}'\n{_listing()}") from None
        raise TargetError(f"{target} cannot be loaded: it needs the module '{missing}', which is not installed "
                          "(the framework extras are roost[dspy], roost[langgraph], roost[autogen], "
                          "roost[crewai])") from exc
    if not callable(getattr(module, "run", None)):
        raise TargetError(f"{target} is not a runnable target: it defines no run(input, *, on_step=None, "
                          f"**options) function\n{_listing()}")
    return module


def run(target: str, input: str | dict[str, Any] | None = None, *, on_step: OnStep | None = None,
        **options: Any) -> dict[str, Any]:
    """Run ``target`` on ``input`` and return its result.

    Args:
        target: dotted module name, e.g. ``programs.classify`` or ``graphs.supervisor``.
        input: a string, or a dict of the target's named inputs.
        on_step: called with each step (a dict) as it completes.
        **options: the target's own options, e.g. ``model="writer"``, ``temperature=0.2``.

    Raises:
        TargetError: an unknown target, or one whose ``run`` does not return a dict.
    """
    module = load(target)
    if input is None:
        raise TargetError(f"{target} needs an input: pass input=... (a string or a dict)")
    result = module.run(input, on_step=on_step, **options)
    if not isinstance(result, dict):
        raise TargetError(f"{target}.run returned {type(result).__name__}; a target returns a dict")
    return result


def parse_input(text: str) -> str | dict[str, Any]:
    """Command-line input as a target takes it: a JSON object becomes a dict, anything else stays text.

    Raises:
        TargetError: the text starts like a JSON object but does not parse as one.
    """
    import json

    if not text.lstrip().startswith("{"):
        return text
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TargetError(f"the input starts with '{{' but is not a valid JSON object: {exc.msg} at line "
                          f"{exc.lineno} column {exc.colno}") from None
    if not isinstance(value, dict):
        raise TargetError("the input starts with '{' but is not a JSON object")
    return value


def parse_options(pairs: list[str]) -> dict[str, Any]:
    """``["k=v", ...]`` as a dict; each value is read as JSON when it parses (``3``, ``true``), else as text.

    Raises:
        TargetError: a pair without ``=`` or with a key that is not an identifier.
    """
    import json

    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key.isidentifier():
            raise TargetError(f"--option takes KEY=VALUE with KEY a name, e.g. --option temperature=0.2; got '{pair}'")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def describe_step(step: Step, width: int = 160) -> str:
    """One line for a step: ``[kind] name (1.23s): output``, the output cut to ``width`` characters."""
    import json

    head = f"[{step.get('kind', 'step')}] {step.get('name', '')}".rstrip()
    if step.get("seconds") is not None:
        head += f" ({step['seconds']:.2f}s)"
    if step.get("error"):
        body = f"error: {step['error']}"
    else:
        output = step.get("output", "")
        body = output if isinstance(output, str) else json.dumps(output, ensure_ascii=False, default=str)
    body = " ".join(str(body).split())
    if len(body) > width:
        body = body[: width - 3] + "..."
    return f"{head}: {body}" if body else head
