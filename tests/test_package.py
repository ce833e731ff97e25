"""The package metadata an adopter sees is complete, and the README's Install section matches it."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
README = (ROOT / "README.md").read_text()
VENDORS = ("biros", "docimprint", "finovox", "mindee", "mindee_v2")


def test_the_metadata_is_complete():
    assert PROJECT["readme"] == "README.md"
    assert PROJECT["license"] == "Apache-2.0"
    assert all((ROOT / name).is_file() for name in PROJECT["license-files"])
    classifiers = set(PROJECT["classifiers"])
    assert {"Framework :: Apache Airflow :: Provider", "Typing :: Typed"} <= classifiers
    assert any(c.startswith("Development Status ::") for c in classifiers)


def test_the_install_section_names_every_user_extra_and_python_version():
    install = README.split("## Install", 1)[1].split("\n## ", 1)[0]
    assert "pip install" in install
    assert "--constraint" in install
    assert "constraints-${AIRFLOW_VERSION}" in install
    extras = set(PROJECT["optional-dependencies"]) - {
        "test",
        "bench",
        "deploy",
    }  # ours: the suite, benchmarks, the deployment test
    assert extras == {"postgres", "amazon", "google", "microsoft-azure"}
    for extra in extras:
        assert f"| `{extra}` |" in install
        for requirement in PROJECT["optional-dependencies"][extra]:
            name = requirement.split(">", 1)[0].split("=", 1)[0]
            assert f"`{name}`" in install, (extra, name)
    for classifier in PROJECT["classifiers"]:
        if classifier.startswith("Programming Language :: Python :: 3."):
            assert classifier.rsplit(" ", 1)[1] in install


def test_a_dag_file_importing_every_operator_and_sensor_does_not_load_aiohttp():
    # aiohttp is the triggers' client only: loading it costs every DAG parse and task start about 0.3 s.
    modules = [f"airflow_docjobs.{kind}.{vendor}" for kind in ("operators", "sensors") for vendor in VENDORS]
    code = f"import sys; import {', '.join([*modules, 'airflow_docjobs.operators.ingest'])}; print('aiohttp' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
