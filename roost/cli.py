"""`roost ...`: the command line. Thin: parses, calls the package, prints.

Every error roost raises on purpose (:class:`roost.errors.RoostError`) is shown
as one line on stderr with exit code 1; no traceback for bad input.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import typer
from typer.core import TyperGroup

from roost import __version__
from roost.errors import RoostError

app = typer.Typer(
    name="roost",
    help="Serve, fine-tune and compose small LLMs with DSPy, LangGraph, AutoGen and CrewAI.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(help="List, inspect and remove the bases and adapters in the store.", no_args_is_help=True)
app.add_typer(models_app, name="models")
traces_app = typer.Typer(help="Show the calls the backend recorded.", no_args_is_help=True)
app.add_typer(traces_app, name="traces")


class _FinetuneCommands(TyperGroup):
    """`roost finetune ...`: commands built from the finetune package's typed configs, imported on first use."""

    names = ("sft", "dpo", "reward", "grpo", "recipe")

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self.names)

    def get_command(self, ctx: Any, name: str) -> Any:
        if name not in self.names:
            return None
        if not hasattr(self, "_built"):
            try:
                from finetune.cli import build_app
            except ImportError as exc:
                _fail(f"`roost finetune` needs the finetune extra: pip install 'roost[finetune]' ({exc})")
            self._built = typer.main.get_command(build_app(_finetune_run))
        return self._built.get_command(ctx, name)


finetune_app = typer.Typer(cls=_FinetuneCommands, no_args_is_help=True,
                           help="Fine-tune adapters: sft, dpo, reward, grpo and recipes; the backend hot-loads them.")
app.add_typer(finetune_app, name="finetune")

F = TypeVar("F", bound=Callable[..., Any])


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def handles_errors(fn: F) -> F:
    """Turn a RoostError into one clear line and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RoostError as exc:
            _fail(str(exc))
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"roost {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress at INFO level."),
) -> None:
    level = logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


@app.command()
@handles_errors
def pull(
    source: str | None = typer.Argument(
        None, help="Local model folder or hub id (owner/name). Omit for the embedded default, SmolLM2-135M-Instruct."
    ),
    name: str | None = typer.Option(None, "--name", help="Store name; defaults to the source's own name."),
) -> None:
    """Put a base model in the store (idempotent)."""
    from roost.config import load_settings
    from roost.models import pull as do_pull

    settings = load_settings()
    path = do_pull(source, name, settings=settings, progress=sys.stderr.isatty())
    typer.echo(f"{path.name} ready at {path}")


@models_app.command("list")
@handles_errors
def models_list(kind: str | None = typer.Option(None, help="Only 'base' or 'adapter'.")) -> None:
    """A table of the bases and adapters in the store."""
    from rich.console import Console
    from rich.table import Table

    from roost.config import load_settings
    from roost.models import list as list_models

    if kind not in (None, "base", "adapter"):
        _fail(f"--kind must be 'base' or 'adapter', not '{kind}'")
    settings = load_settings()
    entries = list_models(kind, settings=settings)
    table = Table(title=f"roost store: {settings.home}")
    for column in ("name", "kind", "size", "created", "lineage"):
        table.add_column(column)
    for e in entries:
        table.add_row(e.name, e.kind, _size(e.size_bytes), _when(e.created), _lineage(e.lineage))
    console = Console()
    if not entries:
        console.print(f"The store at {settings.home} is empty; run `roost pull` for the default model.")
        return
    console.print(table)


@models_app.command("show")
@handles_errors
def models_show(name: str = typer.Argument(..., help="Store name of a base or adapter.")) -> None:
    """Everything the store knows about one base or adapter."""
    import json

    from roost.models import show

    entry = show(name)
    info = {**entry.meta, "path": str(entry.path), "size": _size(entry.size_bytes)}
    typer.echo(json.dumps(info, indent=2, default=str))


@models_app.command("rm")
@handles_errors
def models_rm(name: str = typer.Argument(..., help="Store name of a base or adapter.")) -> None:
    """Delete a base or adapter from the store."""
    from roost.models import remove

    entry = remove(name)
    typer.echo(f"removed {entry.kind} '{entry.name}' ({_size(entry.size_bytes)})")


@app.command()
@handles_errors
def serve(
    host: str | None = typer.Option(None, "--host", help="Interface to bind; default: backend.host (127.0.0.1)."),
    port: int | None = typer.Option(None, "--port", help="Port to listen on; default: backend.port (8765)."),
    api_key: str | None = typer.Option(None, "--api-key", help="Require this bearer key on /v1/* (or ROOST_API_KEY)."),
    model: list[str] | None = typer.Option(
        None, "--model", help="Alias or store name to serve (repeatable); default: every alias whose base is pulled."
    ),
    stop: bool = typer.Option(False, "--stop", help="Stop the backend running for this store instead."),
) -> None:
    """Run the OpenAI-compatible backend (or stop a running one with --stop)."""
    from roost.backend.server import serve as run_server
    from roost.backend.server import stop_server
    from roost.config import load_settings

    settings = load_settings()
    if stop:
        state = stop_server(settings)
        typer.echo(f"stopped the backend at {state.url} (pid {state.pid})")
        return
    overrides = {k: v for k, v in {"host": host, "port": port, "api_key": api_key}.items() if v is not None}
    if overrides:
        from pydantic import ValidationError

        try:
            backend = settings.backend.model_validate({**settings.backend.model_dump(), **overrides})
        except ValidationError as exc:
            error = exc.errors()[0]
            _fail(f"--{error['loc'][0]}".replace("_", "-") + f" {error['input']}: {error['msg']}")
        settings = settings.model_copy(update={"backend": backend})
    run_server(settings, model or None, ready=lambda state: typer.echo(f"roost backend ready at {state.url}/v1"))


@traces_app.command("list")
@handles_errors
def traces_list(
    caller: str | None = typer.Option(None, "--caller", help="Only calls with this caller tag."),
    since: str | None = typer.Option(None, "--since", help="Only calls since T: 10m, 2h, 1d or an ISO date/time."),
    model: str | None = typer.Option(None, "--model", help="Only calls to this model name or alias."),
    limit: int = typer.Option(50, "--limit", help="At most this many, newest first."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line, with the full request."),
) -> None:
    """The calls the backend recorded, newest first."""
    import json

    from rich.console import Console
    from rich.table import Table

    from roost.backend.traces import TraceStore
    from roost.config import load_settings
    from roost.store import Store

    settings = load_settings()
    path = Store(settings.home).traces_db
    traces = TraceStore(path).list(caller=caller, since=since, model=model, limit=limit)
    if as_json:
        for trace in traces:
            typer.echo(json.dumps(trace.to_dict(), ensure_ascii=False, default=str))
        return
    console = Console()
    if not traces:
        console.print(f"No traces match in {path}." if path.exists() else f"No traces recorded yet ({path}).")
        return
    table = Table(title=f"roost traces: {path}")
    table.add_column("time", no_wrap=True)
    for column in ("caller", "model", "adapter", "status", "tokens", "ms", "output"):
        table.add_column(column, overflow="fold")
    for t in traces:
        output = t.error if t.error else (t.output or "").replace("\n", " ")
        tokens = f"{t.prompt_tokens or 0}+{t.completion_tokens or 0}"
        table.add_row(t.time.astimezone().strftime("%m-%d %H:%M:%S"), t.caller or "", t.model, t.adapter or "",
                      str(t.status), tokens, f"{t.latency_ms or 0:.0f}", output[:80])
    console.print(table)


@app.command("run")
@handles_errors
def run_target(
    target: str = typer.Argument(..., help="Dotted module name, e.g. programs.classify; an unknown one lists them."),
    input: str | None = typer.Option(None, "--input", "-i",
                                     help="The input text; a JSON object is passed as named inputs."),
    input_file: str | None = typer.Option(None, "--input-file", help="Read the input from this file ('-': stdin)."),
    model: str | None = typer.Option(None, "--model", "-m", help="Model name or alias the target calls."),
    option: list[str] = typer.Option([], "--option", "-o",
                                     help="KEY=VALUE target option, VALUE read as JSON when it parses; repeatable."),
    as_json: bool = typer.Option(False, "--json", help="Print the result and its steps as one JSON object."),
    approve: bool | None = typer.Option(
        None, "--approve/--reject",
        help="Answer a graph's human-approval step. Without either, a terminal asks; elsewhere the run stops "
             "and says how to resume it.",
    ),
    thread_id: str | None = typer.Option(
        None, "--thread-id", help="Graphs: resume or continue the run saved under this thread id (input optional)."
    ),
) -> None:
    """Run a program, graph or team by name, showing each step as it completes."""
    import json
    from pathlib import Path

    from roost.targets import describe_step, parse_input, parse_options
    from roost.targets import run as run_named

    given = [x for x in (input, input_file) if x is not None]
    if len(given) > 1 or (not given and not thread_id):
        _fail("give the input with exactly one of --input TEXT or --input-file FILE")
    if input is None and input_file is None:
        text = ""  # resuming a saved run: the thread holds its input
    elif input_file is not None:
        try:
            text = sys.stdin.read() if input_file == "-" else Path(input_file).read_text(encoding="utf-8")
        except OSError as exc:
            _fail(f"cannot read --input-file {input_file}: {exc.strerror}")
    else:
        text = input
    options = parse_options(option)
    if model is not None:
        options["model"] = model
    for key, value in (("approve", approve), ("thread_id", thread_id)):
        if value is not None:
            options[key] = value
    steps: list[dict[str, Any]] = []

    def on_step(step: dict[str, Any]) -> None:
        steps.append(step)
        typer.echo(describe_step(step), err=True)

    result = run_named(target, parse_input(text), on_step=on_step, **options)
    while result.get("status") == "paused":  # a graph waits at a human-in-the-loop step
        question, paused_id = result.get("question", "Approve?"), result.get("thread_id")
        if not sys.stdin.isatty():
            _fail(f"{target} paused at '{question}' (thread {paused_id}) and there is no terminal to ask; rerun "
                  f"with --thread-id {paused_id} and --approve or --reject")
        typer.echo(f"\n{result.get('answer', '')}\n", err=True)
        decision = typer.confirm(question, err=True)
        result = run_named(target, "", on_step=on_step, **{**options, "thread_id": paused_id, "approve": decision})
    if as_json:
        typer.echo(json.dumps({"target": target, "result": result, "steps": steps}, ensure_ascii=False, default=str))
    elif len(result) == 1:
        value = next(iter(result.values()))
        typer.echo(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str))
    else:
        typer.echo(json.dumps(result, ensure_ascii=False, indent=2, default=str))


@handles_errors
def _finetune_run(method: str, cls: type, config_file: Any, flags: dict[str, Any]) -> None:
    import finetune
    from finetune.config import build_config

    recipe = flags.pop("_recipe", None)
    config = build_config(cls, config_file, **flags)
    try:
        if method == "recipe":
            if recipe != "sft-then-grpo":
                _fail(f"unknown recipe '{recipe}'; available: sft-then-grpo")
            report = finetune.sft_then_grpo(config)
            for result in report.stages.values():
                _report_finetune(result)
            if report.accuracy:
                steps = " -> ".join(f"{stage} {acc:.1%}" for stage, acc in report.accuracy.items())
                typer.echo(f"dev accuracy on {report.dev_rows} problems: {steps}")
            return
        _report_finetune(getattr(finetune, method)(config))
    except ImportError as exc:
        if exc.name and exc.name.split(".")[0] in ("trl", "datasets", "matplotlib", "peft"):
            _fail(f"`roost finetune` needs the finetune extra: pip install 'roost[finetune]' ({exc})")
        raise


def _report_finetune(result: Any) -> None:
    typer.echo(f"wrote {result.kind} '{result.name}' ({result.method} on {result.base}) to {result.path}")
    shown = ("train_loss", "eval_loss", "reward", "rewards/accuracies", "accuracy")
    metrics = ", ".join(f"{k} {result.metrics[k]:.4g}" for k in shown if k in result.metrics)
    typer.echo(f"metrics.jsonl and curves in {result.run_dir}" + (f" ({metrics})" if metrics else ""))
    if result.skipped:
        counts = ", ".join(f"{rule} {n}" for rule, n in sorted(result.skipped.items()))
        typer.echo(f"skipped {sum(result.skipped.values())} invalid rows: {counts}")
    if result.hot_loaded:
        typer.echo(f"hot-loaded into the backend at {result.backend_url} as model \"{result.name}\"")
    elif result.kind == "adapter" and result.method != "reward":
        typer.echo(f"no backend answered; {result.serve_hint()}")


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _when(iso: str) -> str:
    try:
        return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return iso


def _lineage(lineage: dict[str, Any]) -> str:
    keys = ("base", "method", "source", "format")
    return ", ".join(f"{k}={lineage[k]}" for k in keys if k in lineage)


if __name__ == "__main__":
    app()
