"""The README and docs/ say what the code is: the README's file tree names every file, every path
they mention exists, every `python -m` module they run is importable, and the README stays short."""

import importlib.util
import sys
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
MAX_README_LINES = 320


def project_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout.split()
    return sorted(f for f in out if not f.startswith("results/") and (REPO / f).exists())


def tree_block() -> str:
    text = README.read_text()
    start = text.index("## Files")
    return text[start : text.index("\n## ", start + 1)]


def test_readme_is_short_enough_to_read_in_ten_minutes():
    assert len(README.read_text().splitlines()) <= MAX_README_LINES


def tree_paths(block: str) -> set[str]:
    """The paths the README's tree names: two spaces of indent a level, a folder ends in "/"."""
    lines = block.split("```")[1].splitlines()
    paths, folders = set(), []
    for line in lines:
        if not line.strip():
            continue
        level = (len(line) - len(line.lstrip(" "))) // 2
        name = line.split()[0]
        folders = folders[:level]
        path = "".join(folders) + name
        paths.add(path.rstrip("/"))
        if name.endswith("/"):
            folders.append(name)
    return paths


def test_readme_tree_names_every_file():
    named = tree_paths(tree_block())
    missing = [f for f in project_files() if f not in named]
    assert missing == []
    planted = "```\na/\n  b.py  x\n  c/\n    d.txt  y\ne.md  z\n```"
    assert tree_paths(planted) == {"a", "a/b.py", "a/c", "a/c/d.txt", "e.md"}


def mentioned_paths(text: str) -> set[str]:
    """Backticked repository paths: a known top-level folder, then a file or folder name."""
    tops = "|".join(["srpo_ref", "evals", "workflow", "tests", "config", "benchmarks", "examples", "docs"])
    return {m.rstrip("/.,:") for m in re.findall(rf"`((?:{tops})/[\w./-]*)", text)}


def test_every_path_the_docs_mention_exists():
    missing = {}
    for page in [README, *DOCS]:
        gone = sorted(p for p in mentioned_paths(page.read_text()) if "*" not in p and not (REPO / p).exists())
        if gone:
            missing[page.name] = gone
    assert missing == {}


def test_every_module_the_docs_run_exists():
    missing = {}
    for page in [README, *DOCS]:
        mods = set(re.findall(r"python3? -m ((?:srpo_ref|evals)[\w.]*)", page.read_text()))
        gone = sorted(m for m in mods if importlib.util.find_spec(m) is None)
        if gone:
            missing[page.name] = gone
    assert missing == {}


def documented_runs() -> list[tuple[str, str, list[str]]]:
    """Every ``$ command`` in a fenced block of docs/ with the output printed under it."""
    out = []
    for page in DOCS:
        for block in page.read_text().split("```")[1::2]:
            lines = block.strip("\n").splitlines()
            if lines and lines[0].startswith("$ "):
                out.append((page.name, lines[0][2:], lines[1:]))
    return out


def test_documented_commands_print_what_the_docs_show():
    runs = documented_runs()
    assert len(runs) >= 3  # the two memory plans and the launch line
    for page, command, shown in runs:
        argv = command.split()
        if argv[0] == "srpo-train":
            argv = [sys.executable, "-m", "srpo_ref.run", *argv[1:]]
        elif argv[:2] == ["python", "-m"]:
            argv = [sys.executable, *argv[1:]]
        res = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, f"{page}: {command}\n{res.stderr[-2000:]}"
        assert res.stdout.splitlines() == shown, f"{page}: `{command}` prints something else now"
