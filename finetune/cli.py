"""The ``roost finetune`` commands, built from the typed configs so that each field's description is its --help.

``roost/cli.py`` imports this module only when a finetune command runs (or shows its help); it imports
no torch. Every flag defaults to "not given", so a ``--config`` file fills what the flags leave out.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from pydantic import BaseModel

from finetune.config import DPOConfig, GRPOConfig, RecipeConfig, RewardConfig, SFTConfig

# The two-sided spelling of boolean flags whose "off" side has its own name.
_BOOL_FLAGS = {"full": "--full/--lora"}


def build_app(run: Callable[[str, type[BaseModel], Path | None, dict[str, Any]], None]) -> typer.Typer:
    """A Typer app with one command per method; ``run(method, config class, config file, flags)`` does the work."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    methods = (
        ("sft", SFTConfig, "Supervised fine-tuning on messages or prompt-completion rows (loss on completions)."),
        ("dpo", DPOConfig, "Direct preference optimization on prompt/chosen/rejected rows."),
        ("reward", RewardConfig, "Train a reward model (sequence-classification head) on preference rows."),
        ("grpo", GRPOConfig, "GRPO with --reward module:function or --reward-model NAME, on prompt rows."),
    )
    for method, cls, help_text in methods:
        app.command(method, help=help_text)(_command(method, cls, run))
    app.command("recipe", help="Run a recipe: sft-then-grpo (arithmetic word problems shipped with roost).")(
        _command("recipe", RecipeConfig, run, argument="recipe")
    )
    return app


def _command(method: str, cls: type[BaseModel], run: Callable[..., None], argument: str | None = None) -> Callable:
    params = []
    if argument is not None:
        params.append(inspect.Parameter(argument, inspect.Parameter.KEYWORD_ONLY, annotation=str,
                                        default=typer.Argument(..., help="Recipe name: sft-then-grpo.")))
    params.append(inspect.Parameter(
        "config_file", inspect.Parameter.KEYWORD_ONLY, annotation=Path | None,
        default=typer.Option(None, "--config", help="A TOML or YAML file of these options; flags override it."),
    ))
    for name, field in cls.model_fields.items():
        annotation, option = _option(name, field)
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=option))

    def command(**kwargs: Any) -> None:
        config_file = kwargs.pop("config_file")
        if argument is not None:
            kwargs["_recipe"] = kwargs.pop(argument)
        run(method, cls, config_file, kwargs)

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__name__ = method
    return command


def _option(name: str, field: Any) -> tuple[Any, Any]:
    """(annotation, typer.Option) for one config field; every option defaults to None ("not given")."""
    flag = "--" + name.replace("_", "-")
    text = field.description or ""
    if not field.is_required():
        text += f" (default: {_shown(field.default)})"
    base = _plain_type(field.annotation)
    if base is bool:
        return bool | None, typer.Option(None, _BOOL_FLAGS.get(name, f"{flag}/--no-{flag[2:]}"), help=text,
                                         show_default=False)
    return base | None, typer.Option(None, flag, help=text, show_default=False)


def _plain_type(annotation: Any) -> Any:
    """``int``, ``float``, ``str``, ``bool`` or ``Path`` for a field type (Optional and Literal unwrapped)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is typing.Literal:
        return str
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return _plain_type(args[0])
    return annotation


def _shown(value: Any) -> str:
    return "none" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
