"""
The README's sample of what ``make demo`` prints has the lines ``scripts/demo.py`` prints today, in order,
with the rows ``docjobs_demo`` writes (compared by format: running the demo takes a minute).
"""

from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path

import demo

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT / "example_dags"))
import docjobs_demo  # noqa: E402 - the example DAG file, from its folder

SOURCES = ["finovox_document", "finovox_case", "mindee", "mindee_v2", "docimprint", "biros"]


def pattern(template: str) -> re.Pattern[str]:
    """A format string as a regex: each {field} or {field:spec} stands for a number."""
    parts = re.split(r"\{\w+(?::[^}]*)?\}", template)
    return re.compile(r"\d+".join(map(re.escape, parts)))


def readme_sample() -> list[str]:
    text = (ROOT / "README.md").read_text()
    after = text.split("`make demo` ends with", 1)[1]
    block = after.split("```", 2)[1]
    return [line for line in block.splitlines()[1:]]


def test_the_readme_sample_is_what_make_demo_prints():
    lines = readme_sample()
    header = pattern(demo.HEADER)
    assert header.fullmatch(lines[0]), (lines[0], demo.HEADER)
    count = int(re.findall(r"\d+", lines[0])[1])
    assert count == len(SOURCES)
    rows = lines[1 : 1 + count]
    assert [row.split()[0] for row in rows] == SOURCES
    code = inspect.getsource(docjobs_demo.summarize)
    for row in rows:
        for key in re.findall(r"(\w+)=", row):
            assert f"{key}=" in code, (row, key)
    rest = lines[1 + count :]
    assert demo.NIGHTLY in rest
    assert any(pattern(demo.PAID).fullmatch(line) for line in rest), rest
