"""The floor plan holds: no import cycle, the reward trust boundary imports nothing of the rest,
the report stage imports no trainer, no first-party import hides inside a function, and no
function is longer than one screen. Read from the source (ast), so a violation names its line."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("srpo_ref", "evals")
MAX_CODE_LINES = 70
# The sandbox harness's audit hook is one closure on purpose: it is installed before untrusted
# code runs and holds its allow-lists in its own cells; split into module-level helpers, the
# untrusted program could reach (and rebind) the pieces through the harness module's globals.
LONG_FUNCTIONS_ALLOWED = {("srpo_ref/rewards/code/jail/harness.py", "_install_audit_hook")}


def module_files() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for p in sorted((REPO / pkg).rglob("*.py")):
            parts = p.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = p
    return out


def imports_of(path: Path, known: dict[str, Path]) -> list[tuple[str, int, bool]]:
    """First-party modules ``path`` imports: ``(module, line, inside a function)``. ``from a
    import b`` names the submodule ``a.b`` when there is one, else the package ``a``."""
    tree = ast.parse(path.read_text())
    in_function = set()
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            in_function |= {id(n) for n in ast.walk(fn) if n is not fn}
    out = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module
                     for a in node.names]
        for name in names:
            if name.split(".")[0] in PACKAGES:
                while name not in known and "." in name:
                    name = name.rsplit(".", 1)[0]
                out.append((name, node.lineno, id(node) in in_function))
    return out


def graph() -> dict[str, set[str]]:
    known = module_files()
    return {m: {name for name, _, _ in imports_of(p, known)} - {m} for m, p in known.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_the_import_graph_has_no_cycle():
    assert cycles(graph()) == []


def test_cycle_finder_finds_a_planted_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_first_party_import_inside_a_function():
    known = module_files()
    hidden = [f"{p.relative_to(REPO)}:{line} imports {name}" for p in known.values()
              for name, line, inside in imports_of(p, known) if inside]
    assert hidden == []


def test_the_reward_boundary_imports_nothing_of_the_trainer_or_the_tasks():
    g = graph()
    leaks = {m: sorted(d for d in deps if not d.startswith("srpo_ref.rewards"))
             for m, deps in g.items() if m.startswith("srpo_ref.rewards")}
    assert {m: d for m, d in leaks.items() if d} == {}
    # what runs inside the sandbox imports nothing of the project at all
    assert not g["srpo_ref.rewards.code.jail.harness"] and not g["srpo_ref.rewards.code.jail.wire"]


def test_tasks_use_only_the_rewards():
    g = graph()
    outside = {m: sorted(d for d in deps if not d.startswith(("srpo_ref.tasks", "srpo_ref.rewards")))
               for m, deps in g.items() if m.startswith("srpo_ref.tasks")}
    assert {m: d for m, d in outside.items() if d} == {}


def test_the_report_stage_imports_no_trainer():
    code = ("import sys; import evals.report, srpo_ref.record; "
            "bad = [m for m in sys.modules if m in ('srpo_ref.trainer', 'srpo_ref.run', 'srpo_ref.update', "
            "'srpo_ref.build')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


def code_lines(fn: ast.AST, lines: list[str]) -> int:
    """Non-blank, non-comment lines of a function's body, its docstring excluded."""
    body = fn.body
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
            and isinstance(body[0].value.value, str):
        body = body[1:]
    if not body:
        return 0
    text = lines[body[0].lineno - 1 : fn.end_lineno]
    return sum(1 for line in text if line.strip() and not line.strip().startswith("#"))


@pytest.mark.parametrize("root", ["srpo_ref", "evals", "workflow", "benchmarks", "examples"])
def test_no_function_is_longer_than_a_screen(root):
    long = []
    for p in sorted((REPO / root).rglob("*.py")):
        rel = str(p.relative_to(REPO))
        lines = p.read_text().splitlines()
        for fn in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) and (rel, fn.name) not in LONG_FUNCTIONS_ALLOWED:
                n = code_lines(fn, lines)
                if n > MAX_CODE_LINES:
                    long.append(f"{rel}:{fn.lineno} {fn.name} ({n} lines)")
    assert long == []
