"""Run generated Python against test cases in a separate, limited process.

Each call starts ``python -I`` in a temporary directory with a CPU-time and a
memory limit and a wall-clock timeout, and executes the code with a reduced set
of builtins (no ``open``, ``eval``, ``exec`` or ``input``) and an import hook
that allows only a few pure modules. This keeps a wrong or looping answer from
hurting the evaluation; it is not a security boundary against hostile code.

Example:
    >>> run_tests("def double(x):\\n    return 2 * x", "double", [{"args": [3], "expected": 6}])
    [True]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from typing import Any

TIMEOUT_S = 5.0
CPU_S = 4
MEMORY_BYTES = 1 << 30  # 1 GiB: the interpreter itself needs ~30 MB; a runaway list hits the limit fast
ALLOWED_MODULES = ("math", "re", "string", "collections", "itertools", "functools", "statistics")
_MARK = "@@roost-sandbox@@"

_RUNNER = r"""
import builtins, json, math, resource, sys
resource.setrlimit(resource.RLIMIT_CPU, (CPU_S, CPU_S))
resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))
job = json.loads(sys.stdin.read())
SAFE = ["abs", "all", "any", "bool", "chr", "dict", "divmod", "enumerate", "filter", "float", "format",
        "frozenset", "hash", "int", "isinstance", "issubclass", "iter", "len", "list", "map", "max", "min", "next",
        "ord", "pow", "range", "repr", "reversed", "round", "set", "slice", "sorted", "str", "sum", "tuple", "zip",
        "Exception", "ValueError", "TypeError", "KeyError", "IndexError", "ZeroDivisionError", "StopIteration",
        "ArithmeticError", "AttributeError", "RuntimeError", "NotImplementedError", "object", "staticmethod",
        "classmethod", "property", "super", "__build_class__", "True", "False", "None"]
safe = {name: getattr(builtins, name) for name in SAFE}
real_import = builtins.__import__
def guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
    if name.split(".")[0] not in ALLOWED_MODULES:
        raise ImportError(f"import of {name} is not allowed here")
    return real_import(name, globals, locals, fromlist, level)
safe["__import__"] = guarded_import
safe["print"] = lambda *a, **k: None

def same(a, b):
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b, abs_tol=1e-6)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b

results = []
try:
    namespace = {"__builtins__": safe, "__name__": "solution"}
    exec(compile(job["code"], "<solution>", "exec"), namespace)
    function = namespace.get(job["entry_point"])
except BaseException:
    function = None
for test in job["tests"]:
    ok = False
    if callable(function):
        try:
            got = json.loads(json.dumps(function(*test["args"])))  # tuples -> lists, as the expected values
            ok = same(got, test["expected"])
        except BaseException:
            ok = False
    results.append(ok)
sys.stdout.write(MARK + json.dumps(results) + "\n")
"""


def run_tests(code: str, entry_point: str, tests: list[dict[str, Any]], *, timeout: float = TIMEOUT_S) -> list[bool]:
    """Whether each test passes: ``entry_point(*test["args"]) == test["expected"]`` (floats within 1e-6).

    A syntax error, a missing function, a crash, a timeout or the memory limit fails
    every test that had not passed; it never raises.
    """
    runner = (_RUNNER.replace("CPU_S", str(CPU_S)).replace("MEMORY_BYTES", str(MEMORY_BYTES))
              .replace("ALLOWED_MODULES", repr(ALLOWED_MODULES)).replace("MARK", repr(_MARK)))
    job = json.dumps({"code": code, "entry_point": entry_point, "tests": tests})
    with tempfile.TemporaryDirectory(prefix="roost-sandbox-") as cwd:
        try:
            done = subprocess.run([sys.executable, "-I", "-c", runner], input=job, capture_output=True, text=True,
                                  timeout=timeout, cwd=cwd, env={"PATH": "/usr/bin:/bin"})
        except subprocess.TimeoutExpired:
            return [False] * len(tests)
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(_MARK):
            results = json.loads(line[len(_MARK):])
            if isinstance(results, list) and len(results) == len(tests):
                return [bool(r) for r in results]
    return [False] * len(tests)
