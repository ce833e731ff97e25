"""``scripts/airflow_home.py`` (``make airflow-home``): the throwaway Airflow home the README's own-DAG path uses."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import pytest
from conftest import VENDORS

ROOT = Path(__file__).resolve().parent.parent


def load_airflow_home():
    spec = importlib.util.spec_from_file_location("airflow_home", ROOT / "scripts" / "airflow_home.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_airflow_home_migrates_then_prints_exports_a_shell_can_eval(tmp_path, monkeypatch, capsys):
    script = load_airflow_home()
    calls = []
    monkeypatch.setattr(script.subprocess, "call", lambda argv, env, **kw: calls.append((argv, env)) or 0)
    home = tmp_path / "home"
    assert script.main([str(home), "--emulator", "http://127.0.0.1:9999/"]) == 0
    ((argv, env),) = calls
    assert argv[1:] == ["db", "migrate"]
    assert env["AIRFLOW_HOME"] == str(home)
    exports = capsys.readouterr().out
    names = (
        "AIRFLOW_HOME",
        "AIRFLOW_CONN_BIROS_DEFAULT",
        "AIRFLOW__CORE__LOAD_EXAMPLES",
        "AIRFLOW__CORE__DAGS_FOLDER",
    )
    script_text = 'eval "$1"; printf "%s\\n"' + "".join(f' "${name}"' for name in names)
    shell = subprocess.run(
        ["bash", "-c", script_text, "bash", exports], capture_output=True, text=True, check=True
    )
    home_seen, biros, examples, dags_folder = shell.stdout.splitlines()
    assert home_seen == str(home)
    assert examples == "False"
    assert dags_folder == str(ROOT / "example_dags")
    assert json.loads(biros) == {
        "conn_type": "biros",
        "host": "http://127.0.0.1:9999/biros",
        "password": "emulator",
    }
    assert exports.count("export AIRFLOW_CONN_") == len(VENDORS)  # one connection per vendor


def test_airflow_home_shows_the_log_when_the_migration_fails(tmp_path, monkeypatch, capsys):
    script = load_airflow_home()

    def failing(argv, env, stdout, **kw):
        stdout.write("Database migration failed: disk full\n")
        return 1

    monkeypatch.setattr(script.subprocess, "call", failing)
    assert script.main([str(tmp_path / "home")]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "disk full" in captured.err
    assert "db-migrate.log" in captured.err


def test_airflow_home_refuses_an_emulator_url_without_a_scheme(capsys):
    with pytest.raises(SystemExit):
        load_airflow_home().parse_args(["--emulator", "127.0.0.1:8080"])
    assert "--emulator must be an http(s) URL" in capsys.readouterr().err
