"""The ``sparseopt-edu`` console script: ``doctor --json`` is one JSON object; bad subcommands fail loudly."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(sys.executable).parent / "sparseopt-edu"


def _cli(*args: str) -> subprocess.CompletedProcess:
    if SCRIPT.exists():
        cmd = [str(SCRIPT), *args]
    else:  # not installed as a console script (plain checkout): the module works the same
        cmd = [sys.executable, "-m", "sparseopt_edu.cli", *args]
    return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def doctor_json() -> dict:
    proc = _cli("doctor", "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # the whole stdout must be one JSON object


def test_doctor_json_has_every_section(doctor_json):
    assert {"python", "torch", "packages", "figurewidget", "lab_overrides", "kernel", "ok"} <= set(doctor_json)
    assert {"version", "cuda_available", "device_name", "cuda_version", "cudnn_version"} <= set(
        doctor_json["torch"]
    )
    expected = {"torchvision", "jupyterlab", "ipywidgets", "jupyterlab_widgets", "plotly", "anywidget",
                "ipykernel", "nbval", "voila"}
    assert expected <= set(doctor_json["packages"])
    for section in ("figurewidget", "lab_overrides", "kernel"):
        assert isinstance(doctor_json[section]["ok"], bool)
        assert doctor_json[section]["detail"]


def test_doctor_json_sees_this_environment(doctor_json):
    assert Path(doctor_json["python"]["prefix"]).resolve() == Path(sys.prefix).resolve()
    # this venv was set up with anywidget, so FigureWidget must work here
    assert doctor_json["figurewidget"]["ok"], doctor_json["figurewidget"]
    assert doctor_json["lab_overrides"]["expected"] == "perCommTarget"


def test_doctor_text_mode_exits_zero():
    proc = _cli("doctor")
    assert proc.returncode == 0, proc.stderr
    assert "jupyterlab" in proc.stdout and "kernel / server" in proc.stdout


def test_unknown_subcommand_fails_with_usage():
    proc = _cli("no-such-command")
    assert proc.returncode != 0
    assert "usage:" in proc.stderr and "no-such-command" in proc.stderr


def test_report_function_is_importable_from_cli():
    from sparseopt_edu.cli import environment_report

    report = environment_report()
    json.dumps(report)  # JSON-serialisable as is
    assert report["packages"]["jupyterlab"]


def test_missing_override_is_reported_with_fix(tmp_path, monkeypatch):
    from sparseopt_edu import doctor

    monkeypatch.setenv("JUPYTERLAB_DIR", str(tmp_path))
    report = doctor.overrides_report()
    assert not report["ok"] and "make setup" in report["fix"]
    (tmp_path / "settings").mkdir()
    (tmp_path / "settings" / "overrides.json").write_text(json.dumps(doctor.shipped_overrides()))
    assert doctor.overrides_report()["ok"]
