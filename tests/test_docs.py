"""
Every Python block of README.md and docs/**/*.md runs here, so the docs cannot drift from the code.

How a block runs is said by an HTML comment on the last non-blank line before its fence:

- no comment, or ``<!-- snippet: module -->``: executed as a script (``__name__ == "__main__"``) in a
  fresh namespace, with the repository root as working directory, the emulator running and
  ``AIRFLOW_CONN_<VENDOR>_DEFAULT`` pointing at it. Environment changes are undone afterwards.
- ``<!-- snippet: pytest -->``: a test module: executed as above (not as ``__main__``), then every
  ``test_*`` function is called, with pytest's fixtures (``monkeypatch``, ``tmp_path``...) as arguments.
- ``<!-- snippet: dag -->``: a whole DAG file. It is written to a temporary DAG bundle (``dag.test()``
  only runs DAGs found in one), and every DAG in it runs with ``dag.test()`` against the emulator and must
  succeed. Jobs end at once, so the sensors' production poll intervals never come into play.
- ``<!-- snippet: dag example_dags/NAME.py -->``: the block is that file, character for character, and the
  file's DAGs run as above (``example_dags/`` is already a bundle).
- ``<!-- snippet: dag-body -->``: the inside of a ``with DAG(...):`` block. It is executed inside one, with
  every operator and sensor class of the provider and Airflow's ``task`` imported; the tasks are built
  (parameters checked) and the DAG serialized, not run. For excerpts whose inputs exist only elsewhere.

Anything else in a snippet comment fails, and so does a Python fence spelled otherwise (```py).

A ```json block after ``<!-- result: KIND -->`` (KIND: finovox, finovox-case, mindee, mindee_v2, docimprint,
docimprint-batch, docimprint-qa, biros) is a trimmed copy of what the emulator answers for that kind of job: every key
it shows must be in the real answer, with a value of the same JSON type.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import linecache
import os
import pkgutil
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import MINDEE_PRODUCT, MINDEE_V2_MODEL, load_dags

from airflow_docjobs.hooks.biros import BirosHook
from airflow_docjobs.hooks.docimprint import DocimprintHook
from airflow_docjobs.hooks.finovox import FinovoxHook
from airflow_docjobs.hooks.mindee import MindeeHook
from airflow_docjobs.hooks.mindee_v2 import MindeeV2Hook

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BUNDLES_VAR = "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"
KINDS = ("module", "pytest", "dag", "dag-body")
DATA = ROOT / "example_dags" / "data"
SOURCES = ["https://example.com/lease_agreement.pdf", "https://example.com/utility_bill.pdf"]
BIROS = {"service_id": "id-cards"}
# Each kind of documented result: its hook, its input, the submit's and the job reference's parameters.
RESULT_KINDS = {
    "finovox": (FinovoxHook, str(DATA / "payslip_2026_10.pdf"), {}, {}),
    "finovox-case": (
        FinovoxHook,
        str(DATA / "rental_folder"),
        {"analysis": "case", "use_case": "rental", "analyse_type": ["decision", "explanation", "share_link"]},
        {"analysis": "case"},
    ),
    "mindee": (MindeeHook, str(DATA / "invoice_2026_11_042.pdf"), MINDEE_PRODUCT, MINDEE_PRODUCT),
    "mindee_v2": (
        MindeeV2Hook,
        str(DATA / "invoice_2026_11_042.pdf"),
        MINDEE_V2_MODEL | {"confidence": True},
        MINDEE_V2_MODEL,
    ),
    "docimprint": (DocimprintHook, SOURCES[0], {}, {}),
    "docimprint-batch": (DocimprintHook, SOURCES, {}, {}),
    "docimprint-qa": (
        DocimprintHook,
        SOURCES[0],
        {"endpoint": "qa", "options": {"question": "Who is the tenant?"}},
        {},
    ),
    "biros": (
        BirosHook,
        str(DATA / "id_card_julien_moreau.pdf"),
        BIROS,
        BIROS | {"include_validation_errors": True, "wait_for_review": True},
    ),
}
# Fence names that look like Python but would escape the runner.
PYTHON_LOOKALIKES = ("py", "python3", "pycon", "ipython", "py3")

FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^\s`]*)")
COMMENT = re.compile(r"^\s*<!--\s*(?P<what>snippet|result)\s*:\s*(?P<spec>.*?)\s*-->\s*$")
LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")


@dataclass(frozen=True)
class Block:
    """One fenced block of a Markdown page, with the comment that says how to check it."""

    page: Path
    line: int  # of the opening fence, 1-based
    info: str  # the fence's language
    comment: tuple[str, str] | None  # ("snippet" | "result", its spec)
    text: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def spec(self) -> list[str]:
        return self.comment[1].split() if self.comment else []


def fenced_blocks(page: Path) -> list[Block]:
    lines = page.read_text().splitlines()
    blocks, index = [], 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        closing = re.compile(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        body, end = [], index + 1
        while end < len(lines) and not closing.match(lines[end]):
            line = lines[end]
            body.append(line[indent:] if line[:indent].strip() == "" else line.lstrip())
            end += 1
        before = index - 1
        while before >= 0 and not lines[before].strip():
            before -= 1
        found = COMMENT.match(lines[before]) if before >= 0 else None
        comment = (found["what"], found["spec"]) if found else None
        blocks.append(Block(page, index + 1, opening["info"].lower(), comment, "\n".join(body) + "\n"))
        index = end + 1
    return blocks


BLOCKS = [block for page in PAGES for block in fenced_blocks(page)]
SNIPPETS = [block for block in BLOCKS if block.info == "python"]
RESULTS = [block for block in BLOCKS if block.comment and block.comment[0] == "result"]


def test_every_python_block_says_how_it_runs():
    problems = []
    for block in BLOCKS:
        what = block.comment[0] if block.comment else None
        if block.info in PYTHON_LOOKALIKES:
            problems.append(f"{block.where}: a ```{block.info} fence; write ```python so the block is run")
        elif block.info == "python" and what == "result":
            problems.append(f"{block.where}: a result comment before a Python block")
        elif block.info == "python" and what == "snippet":
            kind, *rest = block.spec or [""]
            if kind not in KINDS:
                problems.append(f"{block.where}: unknown snippet kind {kind!r}; known: {', '.join(KINDS)}")
            elif rest and kind != "dag":
                problems.append(f"{block.where}: only 'dag' takes a file, not {kind!r}")
            elif rest and not (ROOT / rest[0]).is_file():
                problems.append(f"{block.where}: {rest[0]} does not exist")
        elif block.info != "python" and what == "snippet":
            problems.append(f"{block.where}: a snippet comment before a ```{block.info} block")
        elif what == "result" and (block.info != "json" or (block.spec or [""])[0] not in RESULT_KINDS):
            problems.append(
                f"{block.where}: a result comment needs a ```json block and one of {list(RESULT_KINDS)}"
            )
    assert not problems, "\n".join(problems)


def test_the_docs_have_python_blocks_to_run():
    # A parser that silently found nothing would pass every other test here.
    assert any(block.page.name == "README.md" for block in SNIPPETS)
    assert len(SNIPPETS) >= 8
    assert len(RESULTS) >= 5


def anchors(page: Path) -> set[str]:
    """The anchors GitHub makes of a page's headings: lower case, punctuation dropped, spaces as hyphens."""
    found, fenced = set(), False
    for line in page.read_text().splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced and (heading := re.match(r"#{1,6}\s+(.+?)\s*$", line)):
            found.add(re.sub(r"[^\w\- ]", "", heading[1].lower()).replace(" ", "-"))
    return found


def test_relative_links_point_at_files_and_headings_that_exist():
    missing = []
    for page in PAGES:
        for number, line in enumerate(page.read_text().splitlines(), 1):
            for link in LINK.finditer(line):
                target, _, anchor = link["target"].partition("#")
                if "://" in target or target.startswith("mailto:"):
                    continue
                path = (page.parent / target) if target else page
                if not path.exists() or (anchor and path.suffix == ".md" and anchor not in anchors(path)):
                    missing.append(f"{page.relative_to(ROOT)}:{number}: {link['target']}")
    assert not missing, "\n".join(missing)


def test_the_readme_lists_every_connection_extra():
    from airflow_docjobs.get_provider_info import CONN_FIELDS, CONN_TYPES

    readme = (ROOT / "README.md").read_text()
    rows = dict(re.findall(r"^\| `(\w+)` \| ([^|]+) \|", readme, re.MULTILINE))
    assert set(CONN_FIELDS) <= set(rows), (
        f"missing from the README's extras table: {set(CONN_FIELDS) - set(rows)}"
    )
    for name, field in CONN_FIELDS.items():
        default = json.dumps(field["schema"].get("default")).replace("null", "none")
        assert rows[name].strip() == default, (name, rows[name], default)
    for vendor in CONN_TYPES:
        assert f'"host": "http://127.0.0.1:8080/{vendor}", "password": "emulator"' in readme, vendor


# ---- running the snippets ----------------------------------------------------------------------------------


@pytest.fixture
def restored_environment(monkeypatch):
    """Whatever a snippet does to ``os.environ`` and the working directory is undone after it."""
    monkeypatch.chdir(ROOT)
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def jobs_end_at_once(emulator, tmp_path, monkeypatch):
    """The emulator ends every job at once, and each test lands its results in a store of its own."""
    emulator.state.settings.update({"processing_seconds": 0, "review_seconds": 0})
    monkeypatch.setenv("AIRFLOW__DOCJOBS__RESULTS_URI", f"file://{tmp_path / 'results'}")
    return emulator


@pytest.mark.parametrize("block", SNIPPETS, ids=lambda block: block.where)
def test_snippet(block, request, tmp_path, monkeypatch):
    kind, *rest = block.spec or ["module"]
    if kind in ("module", "pytest"):
        request.getfixturevalue("emulator")
        if kind == "pytest":
            request.getfixturevalue("airflow_db")
        request.getfixturevalue("restored_environment")
        namespace = run_module(block, "__main__" if kind == "module" else "docs_snippet")
        if kind == "pytest":
            tests = [f for name, f in namespace.items() if name.startswith("test_") and callable(f)]
            assert tests, f"{block.where}: a pytest snippet without test_* functions"
            for test in tests:
                # Parameters are pytest fixtures (monkeypatch, tmp_path...), as pytest would pass them.
                test(**{name: request.getfixturevalue(name) for name in inspect.signature(test).parameters})
    elif kind == "dag-body":
        build_dag_body(block)
    else:
        request.getfixturevalue("airflow_db")
        request.getfixturevalue("jobs_end_at_once")
        if rest:
            path = ROOT / rest[0]
            assert block.text == path.read_text(), (
                f"{block.where} differs from {rest[0]}: copy the file again"
            )
        else:
            path = snippet_bundle(block, tmp_path, monkeypatch)
        run_every_dag(path)


def compiled(block: Block) -> Any:
    """The block's code; its lines show in tracebacks as ``page.md:line``."""
    lines = block.text.splitlines(keepends=True)
    linecache.cache[block.where] = (len(block.text), None, lines, block.where)
    return compile(block.text, block.where, "exec")


def run_module(block: Block, name: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": name, "__file__": str(block.page)}
    exec(compiled(block), namespace)
    return namespace


def snippet_bundle(block: Block, tmp_path: Path, monkeypatch) -> Path:
    """Write a DAG snippet into a DAG bundle of its own, next to the suite's bundles."""
    folder = tmp_path / "bundle"
    folder.mkdir()
    name = re.sub(r"\W", "_", block.where.lower())
    path = folder / f"docs_{name}.py"
    path.write_text(block.text)
    bundles = json.loads(os.environ[BUNDLES_VAR])
    bundles.append(
        {
            "name": "docs-snippets",
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(folder)},
        }
    )
    monkeypatch.setenv(BUNDLES_VAR, json.dumps(bundles))
    return path


def run_every_dag(path: Path) -> None:
    dags = load_dags(path)
    assert dags, f"no DAG in {path}"
    for dag_id, dag in dags.items():
        dag_run = dag.test()
        states = {(ti.task_id, ti.map_index): ti.state for ti in dag_run.get_task_instances()}
        assert dag_run.state == "success", (dag_id, states)


def provider_classes() -> dict[str, type]:
    """Every operator and sensor class of the provider, by name."""
    import airflow_docjobs.operators
    import airflow_docjobs.sensors

    found: dict[str, type] = {}
    for package in (airflow_docjobs.operators, airflow_docjobs.sensors):
        for info in pkgutil.iter_modules(package.__path__):
            module = importlib.import_module(f"{package.__name__}.{info.name}")
            found |= {
                name: value
                for name, value in vars(module).items()
                if isinstance(value, type)
                and value.__module__ == module.__name__
                and name.endswith(("Operator", "Sensor"))
            }
    return found


def build_dag_body(block: Block) -> None:
    import pendulum
    from airflow.sdk import DAG, task
    from airflow.serialization.serialized_objects import DagSerialization

    namespace: dict[str, Any] = {"__name__": "docs_snippet", "task": task, **provider_classes()}
    dag_id = re.sub(r"\W", "_", block.where)
    with DAG(dag_id, schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as dag:
        exec(compiled(block), namespace)
    assert dag.task_dict, f"{block.where} builds no task"
    DagSerialization.serialize_dag(dag)


# ---- results as the emulator answers them ------------------------------------------------------------------


def emulator_result(kind: str) -> Any:
    """What the emulator answers for one job of ``kind``, through the provider's own hooks."""
    hook_class, document, params, reference = RESULT_KINDS[kind]
    with hook_class() as hook:
        status = hook.get_job_status(hook.job_reference(hook.submit(document, **params), **reference))
    assert status.state == "succeeded", status
    return status.result


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return {str: "string", list: "array", dict: "object"}[type(value)]


def shape_errors(shown: Any, real: Any, path: str = "$") -> list[str]:
    """Where ``shown`` has a key the real answer lacks, or a value of another JSON type."""
    if json_type(shown) != json_type(real):
        return [f"{path}: the docs show {json_type(shown)}, the emulator answers {json_type(real)}"]
    if isinstance(shown, dict):
        errors = [f"{path}.{key}: not in the emulator's answer" for key in shown if key not in real]
        return errors + [
            e for key in shown if key in real for e in shape_errors(shown[key], real[key], f"{path}.{key}")
        ]
    if isinstance(shown, list):
        if len(shown) > len(real):
            return [f"{path}: the docs show {len(shown)} items, the emulator answers {len(real)}"]
        return [
            e
            for i, (s, r) in enumerate(zip(shown, real, strict=False))
            for e in shape_errors(s, r, f"{path}[{i}]")
        ]
    return []


@pytest.mark.parametrize("block", RESULTS, ids=lambda block: block.where)
def test_a_documented_result_is_what_the_emulator_answers(block, jobs_end_at_once):
    shown = json.loads(block.text)
    errors = shape_errors(shown, emulator_result(block.spec[0]))
    assert not errors, f"{block.where}:\n" + "\n".join(errors)
