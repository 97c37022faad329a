"""One settings resolver: every reader of a variable gives the same answer, and nothing reads around it.

The drifts it replaced, each now a test: ``OTEL_CORR_ADOPT_ENVIRONMENT=off``
passed validation and was ignored (the child still adopted the parent's
trace); booleans were parsed in four places with three grammars; variables
were read with ``os.environ`` in six modules.
"""

from __future__ import annotations

import ast
import io
import logging
import logging.handlers
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from otel_corr import ConfigError, _settings, cli
from otel_corr.logging import _access, configure_logging, stop_queue

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "otel_corr"
TRUE_SPELLINGS = ["true", "TRUE", "True", "1", "yes", "YES", "on", "On", " on "]
FALSE_SPELLINGS = ["false", "FALSE", "False", "0", "no", "No", "off", "OFF", " off\t"]
BLANK = ["", "   "]
WRONG = ["maybe", "2", "y", "n", "t", "f", "enable", "disabled", "-1", "nope"]
SPELLINGS = TRUE_SPELLINGS + FALSE_SPELLINGS + BLANK + WRONG


@contextmanager
def _logging_restored() -> Iterator[None]:
    """configure_logging() replaces the root handlers: put them back."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        yield
    finally:
        stop_queue()
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        _access.set_access_log(False)


def _instrument_field(field: str) -> Callable[[dict[str, str]], object]:
    def read(env: dict[str, str]) -> object:
        return getattr(_settings.resolve_settings({}, env=env), field)

    return read


def _checked_then(read: Callable[[], object]) -> Callable[[dict[str, str]], object]:
    """instrument()'s check of the environment, then the reader that runs outside instrument()."""

    def run(env: dict[str, str]) -> object:
        _settings.check_otel_environment(env)
        with pytest.MonkeyPatch.context() as mp:
            for k, v in env.items():
                mp.setenv(k, v)
            return read()

    return run


def _with_env(read: Callable[[], object]) -> Callable[[dict[str, str]], object]:
    def run(env: dict[str, str]) -> object:
        with pytest.MonkeyPatch.context() as mp:
            for k, v in env.items():
                mp.setenv(k, v)
            return read()

    return run


def _logging_access() -> object:
    with _logging_restored():
        configure_logging(stream=io.StringIO())
        return _access._access


def _logging_queue() -> object:
    with _logging_restored():
        configure_logging(stream=io.StringIO())
        return any(isinstance(h, logging.handlers.QueueHandler) for h in logging.getLogger().handlers)


def _serve_allow_remote() -> object:
    args = cli._parser().parse_args(["serve", "--db", os.path.join(os.environ["TMP_DB_DIR"], "t.db")])
    return cli._serve_config(args).allow_remote


@dataclass(frozen=True)
class Reader:
    variable: str
    where: str
    read: Callable[[dict[str, str]], object]
    default: object


READERS = [
    Reader("OTEL_SDK_DISABLED", "instrument()", _instrument_field("sdk_disabled"), False),
    Reader("OTEL_SDK_DISABLED", "check_otel_environment", _checked_then(lambda: None), None),
    Reader("OTEL_CORR_ADOPT_ENVIRONMENT", "import otel_corr", _checked_then(_settings.adopt_environment), True),
    Reader("OTEL_CORR_UPDATE_REQUEST_HEADER", "instrument()", _instrument_field("update_request_header"), True),
    Reader("OTEL_CORR_TRACE_RESPONSE", "instrument()", _instrument_field("trace_response"), True),
    Reader("OTEL_CORR_ERROR_LOG", "instrument()", _instrument_field("error_log"), True),
    # unset or blank: None, "follow configure_logging"
    Reader("OTEL_CORR_ACCESS_LOG", "instrument()", _instrument_field("access_log"), None),
    Reader("OTEL_CORR_ACCESS_LOG", "configure_logging()", _with_env(_logging_access), True),
    Reader("OTEL_CORR_LOG_QUEUE", "configure_logging()", _with_env(_logging_queue), False),
    Reader("OTEL_CORR_ALLOW_REMOTE", "otel-corr serve", _with_env(_serve_allow_remote), False),
]


def test_every_boolean_variable_has_a_reader_row() -> None:
    """The table below covers every boolean variable the resolver knows (a new one needs a row)."""
    assert {r.variable for r in READERS} == set(_settings.BOOLEAN_VARIABLES)


@pytest.mark.parametrize("reader", READERS, ids=[f"{r.variable}@{r.where}" for r in READERS])
def test_every_reader_of_a_boolean_accepts_the_same_spellings(
    reader: Reader, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each spelling gives True/False/the default everywhere, and a wrong one is a ConfigError naming the variable."""
    monkeypatch.setenv("TMP_DB_DIR", str(tmp_path))
    for name in _settings.BOOLEAN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    got: dict[str, object] = {}
    for spelling in SPELLINGS:
        try:
            got[spelling] = reader.read({reader.variable: spelling})
        except ConfigError as exc:
            got[spelling] = "ConfigError" if reader.variable in str(exc) else f"ConfigError not naming it: {exc}"
    checked_only = reader.where == "check_otel_environment"  # it answers by raising or not
    expected: dict[str, object] = {
        **{s: reader.default if checked_only else True for s in TRUE_SPELLINGS},
        **{s: reader.default if checked_only else False for s in FALSE_SPELLINGS},
        **{s: reader.default for s in BLANK},
        **{s: "ConfigError" for s in WRONG},
    }
    assert got == expected


# --------------------------------------------------------------------------- the child process


CHILD = "import otel_corr; i = otel_corr.current_ids(); print(i.trace_id or '-', i.request_id or '-')"
PARENT_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{PARENT_TRACE_ID}-00f067aa0ba902b7-01"


def _child(adopt: str | None) -> list[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update({"TRACEPARENT": TRACEPARENT, "X_REQUEST_ID": "from-parent", "PYTHONPATH": str(ROOT)})
    if adopt is not None:
        env["OTEL_CORR_ADOPT_ENVIRONMENT"] = adopt
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True, timeout=60)
    return out.stdout.split()


@pytest.mark.parametrize("spelling", ["off", "OFF", "no", "0", "false", " Off "])
def test_a_child_told_not_to_adopt_does_not(spelling: str) -> None:
    """OTEL_CORR_ADOPT_ENVIRONMENT=off used to pass validation and be ignored: the child adopted anyway."""
    trace_id, request_id = _child(spelling)
    assert trace_id != PARENT_TRACE_ID and request_id == "-"


@pytest.mark.parametrize("spelling", [None, "", "on", "YES", "1", "true"])
def test_a_child_adopts_by_default_and_when_told_to(spelling: str | None) -> None:
    """Unset, blank or any true spelling: the child continues the parent's trace and request ID."""
    assert _child(spelling) == [PARENT_TRACE_ID, "from-parent"]


# --------------------------------------------------------------------------- nothing reads around it

#: Code that *writes* a child's environment (copying the parent's), not a setting: (file, function).
WRITES_A_CHILDS_ENVIRONMENT = {
    ("propagation/_process.py", "_wrap_popen_init.__init__"),  # subprocess env= with the trace carrier added
    ("_demo.py", "run_demo"),  # the demo's children, without the parent's OTEL_* variables
}


_READS = frozenset({"environ", "environb", "getenv", "getenvb"})


def _environment_reads(path: Path) -> list[tuple[str, int]]:
    """(enclosing function, dotted, line) of every ``os.environ``/``os.getenv`` use, or import of them."""
    tree = ast.parse(path.read_text(), str(path))
    os_names = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
        if alias.name == "os"
    }
    found: list[tuple[str, int]] = []

    def visit(node: ast.AST, function: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Attribute) and child.attr in _READS:
                # os.environ, not a WSGI request's .environ
                if isinstance(child.value, ast.Name) and child.value.id in os_names:
                    found.append((function, child.lineno))
            elif isinstance(child, ast.ImportFrom) and child.module == "os":
                if {a.name for a in child.names} & _READS:
                    found.append((function, child.lineno))
            inner = function
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):  # nested: outer.inner
                inner = child.name if function == "<module>" else f"{function}.{child.name}"
            visit(child, inner)

    visit(tree, "<module>")
    return found


def test_no_module_but_the_resolver_reads_the_environment() -> None:
    """os.environ/getenv appear only in _settings.py, and where a child's environment is written."""
    stray = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel == "_settings.py":
            continue
        for function, line in _environment_reads(path):
            if (rel, function) not in WRITES_A_CHILDS_ENVIRONMENT:
                stray.append(f"{rel}:{line} in {function}")
    assert stray == []


def test_the_scan_sees_every_form_of_reading(tmp_path: Path) -> None:
    """The scanner itself finds each way of reading the environment (a scan that finds nothing proves nothing)."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import os\nimport os as system\nfrom os import getenv\n"
        "A = os.environ.get('X')\n"
        "def f():\n    def inner():\n        return system.getenv('Y')\n"
        "def g(request):\n    return request.environ, environ\n"  # a WSGI environ is not the process's
    )
    assert _environment_reads(probe) == [("<module>", 3), ("<module>", 4), ("f.inner", 7)]


def test_the_allow_list_names_functions_that_exist() -> None:
    """Each allowed (file, function) still exists and still uses the environment (no stale exemption)."""
    for rel, function in WRITES_A_CHILDS_ENVIRONMENT:
        assert function in {f for f, _ in _environment_reads(PACKAGE / rel)}, (rel, function)


def test_the_configuration_page_states_the_one_boolean_grammar() -> None:
    """docs/configuration.md says there is one grammar, spells it as the code does, and lists every boolean."""
    doc = (ROOT / "docs" / "configuration.md").read_text()
    assert "one boolean grammar" in doc.lower()
    for spelling in (*_settings.TRUE, *_settings.FALSE):
        assert f"`{spelling}`" in doc, spelling
    for name in _settings.BOOLEAN_VARIABLES:
        assert name in doc
