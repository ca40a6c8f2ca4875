"""environment.yml cannot be built in CI (no conda channel is reachable), so keep it in step with pyproject."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pyproject_pins() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        pins += extra
    return set(pins)


def _environment_pins() -> set[str]:
    text = (ROOT / "environment.yml").read_text()
    return set(re.findall(r"^\s+- ([A-Za-z0-9_.-]+==[^\s]+)\s*$", text, flags=re.M))


def test_every_pyproject_pin_is_exact():
    for pin in _pyproject_pins():
        assert "==" in pin, f"{pin!r} is not pinned with =="


def test_environment_yml_mirrors_pyproject():
    assert _environment_pins() == _pyproject_pins()


def test_environment_yml_uses_python_311():
    assert re.search(r"^\s+- python=3\.11\s*$", (ROOT / "environment.yml").read_text(), flags=re.M)
