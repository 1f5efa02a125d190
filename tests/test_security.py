"""Security checks over the code itself: SQL is never built by formatting strings, nothing is unpickled,
and no secret is committed."""

from __future__ import annotations

import ast
import re
import subprocess

from genrec_core.dev.paths import PROJECT_ROOT

SOURCES = sorted(
    [
        *(PROJECT_ROOT / "genrec_core").rglob("*.py"),
        *(PROJECT_ROOT / "plugins").rglob("*.py"),
        *(PROJECT_ROOT / "dags").glob("*.py"),
    ]
)


def _formatted(node: ast.AST) -> bool:
    """An f-string, `%` or `.format()` on a string: how SQL injection gets written."""
    if isinstance(node, ast.JoinedStr):
        return any(isinstance(v, ast.FormattedValue) for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mod, ast.Add)):
        return isinstance(node.left, (ast.Constant, ast.JoinedStr)) or _formatted(node.left) or _formatted(node.right)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
        return isinstance(node.func.value, ast.Constant)  # sql.SQL("...").format(...) is the safe form
    return False


def test_sql_is_never_built_by_string_formatting():
    offenders = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("execute", "executemany", "copy_expert", "mogrify")
                and node.args
            ):
                if _formatted(node.args[0]):
                    offenders.append(f"{path.relative_to(PROJECT_ROOT)}:{node.lineno}")
    assert not offenders, f"SQL built by string formatting (use psycopg2.sql and bound values): {offenders}"


def test_the_lint_catches_what_it_looks_for():
    bad = ast.parse('cur.execute(f"SELECT * FROM t WHERE id = {x}")').body[0].value
    good = ast.parse('cur.execute(sql.SQL("SELECT {}").format(sql.Identifier(x)), (y,))').body[0].value
    assert _formatted(bad.args[0]) and not _formatted(good.args[0])


def test_nothing_is_unpickled():
    offenders = []
    for path in SOURCES:
        text = path.read_text()
        for pattern in (r"\bpickle\.loads?\(", r"weights_only\s*=\s*False", r"\bdill\.", r"\bjoblib\.load\("):
            offenders += [f"{path.relative_to(PROJECT_ROOT)}: {pattern}" for _ in re.finditer(pattern, text)]
        for match in re.finditer(r"torch\.load\(", text):
            call = text[match.start() : text.find(")", match.start()) + 200]
            if "weights_only=True" not in call:
                offenders.append(f"{path.relative_to(PROJECT_ROOT)}: torch.load without weights_only=True")
    assert not offenders, offenders


def test_no_secrets_are_committed():
    tracked = subprocess.run(["git", "ls-files"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    files = [PROJECT_ROOT / f for f in tracked.stdout.splitlines()]
    assert not [f for f in files if f.name == ".env"], "an env file with secrets is tracked"
    patterns = [
        r"AKIA[0-9A-Z]{16}",
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
        r"xox[baprs]-[0-9A-Za-z-]{10,}",
        r"postgres(?:ql)?://[^:\s/]+:(?!\$|\{|password@)[^@\s'\"]{6,}@",
    ]
    found = []
    for path in files:
        # tests/ holds made-up credentials on purpose (they prove masking); the rest must hold none
        in_tests = path.relative_to(PROJECT_ROOT).parts[0] == "tests"
        if not path.is_file() or path.suffix in (".png", ".parquet", ".whl") or in_tests:
            continue
        text = path.read_text(errors="ignore")
        for pattern in patterns:
            found += [f"{path.relative_to(PROJECT_ROOT)}: {m.group(0)[:40]}" for m in re.finditer(pattern, text)]
    assert not found, found
