"""The Dockerfiles, checked without a Docker engine: what they copy exists, what they run is real, and
the Dagster versions they pin are the ones this project is tested with."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import re
import shlex
import subprocess
import sys

import pytest
from dagster_dbt import DbtProject
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from cm_pipeline.project import REPO_ROOT
from cm_pipeline_tests.deploy.stack import DOCKER_DIR

DOCKERFILES = ("Dockerfile.user_code", "Dockerfile.dagster")
# What the user-code image leaves out: the embedded Postgres (demo/tests only) and the webserver (its
# own image), with the webserver's GraphQL layer, which nothing else in the image requires.
NOT_IN_USER_CODE_IMAGE = {"pgserver": "pgserver", "dagster-webserver": "dagster_webserver"}


def _instructions(name: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with line continuations joined and comments dropped."""
    text = (DOCKER_DIR / name).read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    out = []
    for line in joined.splitlines():
        if line.strip():
            instruction, _, args = line.strip().partition(" ")
            out.append((instruction.upper(), args.strip()))
    return out


def _args(name: str) -> dict[str, str]:
    return dict(a.split("=", 1) for i, a in _instructions(name) if i == "ARG" and "=" in a)


@pytest.mark.parametrize("name", DOCKERFILES)
def test_every_copied_path_exists(name):
    copies = [args for instruction, args in _instructions(name) if instruction == "COPY"]
    assert copies
    for args in copies:
        *sources, _dest = [a for a in shlex.split(args) if not a.startswith("--")]
        for source in sources:
            assert (REPO_ROOT / source).exists(), f"{name}: COPY {source} does not exist"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_pinned_dagster_versions_match_the_tested_ones(name):
    args = _args(name)
    assert args["DAGSTER_VERSION"] == importlib.metadata.version("dagster")
    assert args["DAGSTER_LIBS_VERSION"] == importlib.metadata.version("dagster-postgres")
    env_example = (DOCKER_DIR / ".env.example").read_text()
    assert f"DAGSTER_VERSION={args['DAGSTER_VERSION']}" in env_example
    assert f"DAGSTER_LIBS_VERSION={args['DAGSTER_LIBS_VERSION']}" in env_example


def _make_recipe(target: str) -> list[str]:
    """The command lines of a Makefile target's recipe."""
    lines = (REPO_ROOT / "Makefile").read_text().splitlines()
    start = next(n for n, line in enumerate(lines) if re.match(rf"{re.escape(target)}\s*:", line))
    recipe = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip())
    return recipe


def _dbt_prepare_commands(commands: list[str]) -> list[list[str]]:
    """`[subcommand..., options...]` of every `dagster-dbt project prepare-and-package` in `commands`."""
    found = []
    for command in commands:
        words = shlex.split(command)
        for n, word in enumerate(words):
            if os.path.basename(word) == "dagster-dbt" and words[n + 1 : n + 3] == [
                "project",
                "prepare-and-package",
            ]:
                rest = words[n + 1 :]
                found.append(rest[: rest.index("&&")] if "&&" in rest else rest)
    return found


def test_user_code_image_prepares_dbt_with_the_make_setup_command():
    """The image prepares the manifest with the very command `make setup` runs: dagster-dbt's own, on the
    file that defines the project's one DbtProject, which carries the preparer that command calls.

    What that preparer does (dbt parse into dbt_project/target/manifest.json) is covered by
    cm_pipeline_tests/models/test_dbt_wiring.py::test_clean_checkout_and_edited_models_give_a_current_manifest.
    """
    (setup,) = _dbt_prepare_commands(_make_recipe("setup"))
    runs = [args for i, args in _instructions("Dockerfile.user_code") if i == "RUN"]
    assert setup in _dbt_prepare_commands(runs), (
        f"Dockerfile.user_code does not run `dagster-dbt {' '.join(setup)}`"
    )

    # The command is installed with dagster-dbt, and its --file holds exactly one DbtProject: ours.
    assert importlib.metadata.entry_points(group="console_scripts", name="dagster-dbt")
    file = setup[setup.index("--file") + 1]
    module = importlib.import_module(file.removesuffix(".py").replace("/", "."))
    projects = [value for value in vars(module).values() if isinstance(value, DbtProject)]
    assert projects == [module.DBT_PROJECT]
    assert isinstance(module.DBT_PROJECT.preparer, module.VenvDbtProjectPreparer)
    assert module.DBT_PROJECT.project_dir == REPO_ROOT / "dbt_project"


def test_user_code_image_serves_the_definitions_as_a_user():
    instructions = _instructions("Dockerfile.user_code")
    cmd = next(args for i, args in instructions if i == "CMD")
    assert '"api", "grpc"' in cmd and '"cm_pipeline.definitions"' in cmd
    users = [args for i, args in instructions if i == "USER"]
    assert users and users[-1] != "root"


def test_webserver_image_runs_as_a_user_and_holds_no_user_code():
    instructions = _instructions("Dockerfile.dagster")
    copied = " ".join(args for i, args in instructions if i == "COPY")
    assert "cm_pipeline" not in copied.replace("docker/", "")
    users = [args for i, args in instructions if i == "USER"]
    assert users and users[-1] != "root"


def _load_requirements_script():
    spec = importlib.util.spec_from_file_location(
        "user_code_requirements", DOCKER_DIR / "user_code_requirements.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pyproject_dependencies() -> list[str]:
    toml = _load_requirements_script().tomllib  # tomllib, or tomli on Python 3.10
    return toml.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]


def _image_requirements() -> list[str]:
    """What Dockerfile.user_code asks pip for: pyproject's filtered dependencies and the pinned extras."""
    script = _load_requirements_script()
    pinned = re.findall(
        r'"([A-Za-z0-9-]+)==\$\{[A-Z_]+\}"', (DOCKER_DIR / "Dockerfile.user_code").read_text()
    )
    assert pinned, "no pinned packages found in Dockerfile.user_code"
    return script.user_code_requirements(REPO_ROOT / "pyproject.toml") + pinned


def _installed_closure(requirements: list[str]) -> set[str]:
    """Distributions (canonical names) that installing `requirements` pulls in, read from this venv's metadata."""
    seen: set[str] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.requires(req.name) or []
        except importlib.metadata.PackageNotFoundError:
            continue  # e.g. dagster-k8s, not installed here: its own dependencies are not followed
        for line in requires:
            dep = Requirement(line)
            if dep.marker is None or dep.marker.evaluate({"extra": ""}):
                todo.append(dep)
    return seen


def test_user_code_image_installs_the_project_without_local_only_packages():
    instructions = _instructions("Dockerfile.user_code")
    runs = " ".join(args for i, args in instructions if i == "RUN")
    assert "user_code_requirements.py pyproject.toml" in runs
    assert "pip install --no-deps -e ." in runs, "the project's own dependencies would bring pgserver back"
    wanted = _image_requirements()
    names = {canonicalize_name(Requirement(r).name) for r in wanted}
    assert not names & set(NOT_IN_USER_CODE_IMAGE)

    script = _load_requirements_script()
    declared = [
        r
        for r in _pyproject_dependencies()
        if canonicalize_name(Requirement(r).name) not in NOT_IN_USER_CODE_IMAGE
    ]
    assert script.user_code_requirements(REPO_ROOT / "pyproject.toml") == declared
    # Nothing the image installs depends on them either.
    closure = _installed_closure(wanted)
    assert "dagster" in closure and "dbt-postgres" in closure
    assert not closure & set(NOT_IN_USER_CODE_IMAGE), sorted(closure & set(NOT_IN_USER_CODE_IMAGE))


def test_a_dependency_that_names_no_package_is_an_error():
    script = _load_requirements_script()
    with pytest.raises(ValueError, match="does not start with a package name"):
        script.distribution_name(">=1.0")
    assert script.distribution_name("Dagster_Webserver>=1.13") == "dagster-webserver"


BLOCKED_IMPORTS = """
import sys

class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError(f"{{name}} is not installed in the user-code image")
        return None

sys.meta_path.insert(0, Blocked())
from cm_pipeline.definitions import defs

repository = defs().get_repository_def()
print(len(repository.get_all_jobs()), "jobs")
"""


def test_the_code_location_loads_without_the_local_only_packages(tmp_path):
    """What the code server and its runs import works in an image without pgserver and the webserver."""
    closure = _installed_closure(_image_requirements())
    blocked = set(NOT_IN_USER_CODE_IMAGE.values())
    if "dagster-graphql" not in closure:
        blocked.add("dagster_graphql")
    env = {
        **os.environ,
        "WAREHOUSE_URL": "postgresql+psycopg2://cm:unused@warehouse.invalid:5432/warehouse",
        "CHARTMOGUL_API_KEY": "unused",
        "CM_PIPELINE_STATE_DIR": str(tmp_path / "state"),
    }
    result = subprocess.run(
        [sys.executable, "-c", BLOCKED_IMPORTS.format(blocked=sorted(blocked))],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "jobs" in result.stdout
