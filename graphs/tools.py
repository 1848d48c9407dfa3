"""The tools the graphs give their agents: a safe calculator and search over local documents.

The calculator evaluates arithmetic by walking Python's AST with a whitelist of
operators and functions; it never calls ``eval``. Document search splits the
Markdown files of a folder into passages, embeds them once with the backend's
``/v1/embeddings`` (all-MiniLM-L6-v2) and ranks passages by cosine similarity.

Example:
    >>> calculate("2 * (3 + 4) ** 2")
    98
    >>> search = DocSearch(DOCS_DIR, backend_embeddings())
    >>> search.top_k("How do I resume a run?", k=2)
"""

from __future__ import annotations

import ast
import logging
import math
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field

from roost.backend.embeddings import EMBEDDING_MODEL
from roost.errors import RoostError

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings
    from langchain_core.tools import BaseTool

    from roost.config import Settings

logger = logging.getLogger(__name__)

DOCS_DIR = Path(__file__).parent / "docs"
"""The documents the graphs search by default: a few short notes about roost."""

MAX_EXPRESSION_CHARS = 200
MAX_EXPONENT = 100  # 10**100 still prints in a line; 9**9**9 would take minutes and gigabytes
MAX_MAGNITUDE = 1e100


class CalculatorError(RoostError, ValueError):
    """The expression is not plain arithmetic, or its result is out of range."""


_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt, "abs": abs, "round": round, "min": min, "max": max, "log": math.log, "exp": math.exp,
}
_CONSTANTS = {"pi": math.pi, "e": math.e}


def calculate(expression: str) -> int | float:
    """Evaluate arithmetic: numbers, ``+ - * / // % **``, parentheses, ``sqrt abs round min max log exp``, ``pi e``.

    ``^`` is read as a power and ``x`` between numbers as a product, the way people
    (and small models) write them. Anything else (names, attributes, calls of other
    functions, strings) is refused.

    Raises:
        CalculatorError: saying what part of the expression is not allowed, or why it cannot be computed.
    """
    if not isinstance(expression, str) or not expression.strip():
        raise CalculatorError("the calculator needs an arithmetic expression, such as '12 * (3 + 4)'")
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise CalculatorError(f"the expression is {len(expression)} characters; the limit is {MAX_EXPRESSION_CHARS}")
    text = expression.strip().rstrip("=").replace("^", "**").replace("×", "*").replace("÷", "/")
    text = re.sub(r"(?<=\d)\s*[xX]\s*(?=[\d(])", "*", text)
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise CalculatorError(f"'{expression}' is not an arithmetic expression") from None
    try:
        value = _evaluate(tree.body)
    except ZeroDivisionError:
        raise CalculatorError(f"'{expression}' divides by zero") from None
    except (OverflowError, ValueError) as exc:
        raise CalculatorError(f"'{expression}' cannot be computed: {exc}") from None
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def _evaluate(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
            raise CalculatorError(f"the exponent {right} is too large; the limit is {MAX_EXPONENT}")
        result = _BINARY[type(node.op)](left, right)
        if isinstance(result, complex) or abs(result) > MAX_MAGNITUDE:
            raise CalculatorError("the result is out of range (a complex number or above 1e100)")
        return result
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS:
        if node.keywords:
            raise CalculatorError(f"{node.func.id}() takes no keyword arguments here")
        return _FUNCTIONS[node.func.id](*(_evaluate(arg) for arg in node.args))
    raise CalculatorError(f"'{ast.unparse(node)}' is not allowed: use numbers, + - * / // % **, parentheses and "
                          f"{', '.join(sorted(_FUNCTIONS))}")


# documents -----------------------------------------------------------------------


@dataclass(frozen=True)
class Passage:
    """A piece of a document: its file, its heading and its text."""

    source: str
    heading: str
    text: str

    def render(self) -> str:
        return f"[{self.source} / {self.heading}] {self.text}"


def split_markdown(path: Path) -> list[Passage]:
    """One passage per paragraph, labelled with the file name and the nearest heading above it."""
    heading = path.stem
    passages = []
    for block in re.split(r"\n\s*\n", path.read_text(encoding="utf-8")):
        block = block.strip()
        if not block:
            continue
        if block.startswith("#"):
            first, _, rest = block.partition("\n")
            heading = first.lstrip("#").strip()
            block = rest.strip()
            if not block:
                continue
        passages.append(Passage(path.name, heading, " ".join(block.split())))
    return passages


class DocSearch:
    """Cosine top-k over the passages of the ``*.md`` files in ``folder``.

    Passages are embedded on the first query, once per instance.

    Args:
        folder: where the Markdown documents are.
        embeddings: any LangChain :class:`~langchain_core.embeddings.Embeddings` (see :func:`backend_embeddings`).
    """

    def __init__(self, folder: Path | str, embeddings: Embeddings) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise RoostError(f"document folder {self.folder} does not exist")
        self.passages = [p for file in sorted(self.folder.glob("*.md")) for p in split_markdown(file)]
        if not self.passages:
            raise RoostError(f"document folder {self.folder} holds no non-empty *.md files")
        self.embeddings = embeddings
        self._vectors: list[list[float]] | None = None

    def top_k(self, query: str, k: int = 3) -> list[tuple[float, Passage]]:
        """The ``k`` passages most similar to ``query``, best first, with their cosine similarity."""
        if self._vectors is None:
            self._vectors = [_unit(v) for v in self.embeddings.embed_documents([p.render() for p in self.passages])]
        q = _unit(self.embeddings.embed_query(query))
        scored = [(sum(a * b for a, b in zip(q, v, strict=True)), p) for v, p in zip(self._vectors, self.passages,
                                                                                      strict=True)]
        scored.sort(key=lambda item: item[0], reverse=True)
        return scored[:k]


def _unit(vector: Sequence[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


def backend_embeddings(settings: Settings | None = None) -> Embeddings:
    """LangChain embeddings from the backend's ``/v1/embeddings`` (starting the backend when none answers)."""
    try:
        from langchain_openai import OpenAIEmbeddings
    except ImportError:
        raise RoostError("the graphs need LangGraph: install roost[langgraph]") from None
    from roost.backend import ensure_running
    from roost.config import load_settings

    settings = settings or load_settings()
    url = ensure_running(settings)
    # check_embedding_ctx_length=False: send text, not tiktoken ids, which MiniLM's vocabulary does not share.
    return OpenAIEmbeddings(model=EMBEDDING_MODEL, base_url=f"{url}/v1", api_key=settings.backend.api_key or "roost",
                            check_embedding_ctx_length=False, max_retries=1)


# tools ------------------------------------------------------------------------------

# The tools' argument schemas carry these patterns, and the backend decodes every call under its schema: a 135M
# model then writes "12 * 7" where, free to write any string, it wrote "" or "][" (measured on SmolLM2-135M).
# maxLength keeps a whole call (~25 tokens of JSON around the argument) inside a 96-token reply, so a model
# that loops on "A.B.C." still closes its call instead of being cut off mid-string.
EXPRESSION_PATTERN = r"^[(0-9][-+*/%^(). 0-9]*$"
QUERY_PATTERN = r"^[A-Za-z][A-Za-z0-9 '-]*$"
ARGUMENT_MAX_CHARS = 40


def calculator_tool() -> BaseTool:
    """The calculator as a LangChain tool; a bad expression comes back to the model as the tool's answer."""
    from langchain_core.tools import tool

    @tool
    def calculator(expression: Annotated[str, Field(description="the arithmetic to compute, e.g. 17 * 23",
                                                    pattern=EXPRESSION_PATTERN, min_length=1,
                                                    max_length=ARGUMENT_MAX_CHARS)]) -> str:
        """Compute an arithmetic expression exactly."""
        try:
            return str(calculate(expression))
        except CalculatorError as exc:
            return f"error: {exc}"

    return calculator


def search_tool(search: DocSearch, k: int = 3) -> BaseTool:
    """Document search as a LangChain tool that returns the ``k`` best passages, one per line."""
    from langchain_core.tools import tool

    @tool
    def search_docs(query: Annotated[str, Field(description="the key words to look for, e.g. resume a run",
                                                pattern=QUERY_PATTERN, min_length=3,
                                                max_length=ARGUMENT_MAX_CHARS)]) -> str:
        """Search roost's documentation for passages about the query."""
        hits = search.top_k(query, k)
        return "\n".join(passage.render() for _, passage in hits)

    return search_docs
