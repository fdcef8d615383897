"""The Dockerfile without Docker: its build stage's COPY steps into a folder, its install command
into a fresh virtual environment, and its runtime stage's environment, health check and command.

No Docker engine runs on the development and CI machines, so this is how the image's build is
exercised there (tests/e2e/test_container_entrypoints.py). The commands are read from the
Dockerfile itself, never restated, so the test runs what `docker build` runs. The one change:
the install keeps pip's cache (the image's `--no-cache-dir` only keeps the layer small).

`python -m deploy.compose.image` regenerates deploy/compose/constraints.txt the same way: the
install without its constraints, then `pip freeze`.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
CONSTRAINTS = REPO / "deploy" / "compose" / "constraints.txt"
PROJECT = "campaign-tracker"
# Where the image keeps its virtual environment; a folder under the emulation's root here.
IMAGE_VENV = "/opt/venv"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str
    line: int


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        if not found:
            raise ValueError(f"no {keyword} in the stage FROM {self.base}")
        return found[-1]


def parse(text: str) -> list[Instruction]:
    """Instructions with their continuation lines joined, comments dropped."""
    instructions: list[Instruction] = []
    parts: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not parts and (not stripped or stripped.startswith("#")):
            continue
        if parts and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if not parts:
            start = number
        continued = stripped.endswith("\\")
        parts.append(stripped[:-1].strip() if continued else stripped)
        if not continued:
            keyword, _, arguments = " ".join(p for p in parts if p).partition(" ")
            instructions.append(Instruction(keyword.upper(), arguments.strip(), start))
            parts = []
    if parts:
        raise ValueError("the Dockerfile ends inside a continued instruction")
    return instructions


def build_args(instructions: list[Instruction]) -> dict[str, str]:
    """ARG defaults declared before the first FROM (those FROM may use)."""
    args: dict[str, str] = {}
    for instruction in instructions:
        if instruction.keyword == "FROM":
            break
        if instruction.keyword == "ARG" and "=" in instruction.arguments:
            name, _, value = instruction.arguments.partition("=")
            args[name.strip()] = value.strip()
    return args


def stages(instructions: list[Instruction]) -> list[Stage]:
    args = build_args(instructions)
    result: list[Stage] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            words = [w for w in instruction.arguments.split() if not w.startswith("--")]
            base = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m[1] or m[2]], words[0])
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            result.append(Stage(base, name))
        elif result:
            result[-1].instructions.append(instruction)
    return result


def load(path: Path = DOCKERFILE) -> list[Stage]:
    return stages(parse(path.read_text()))


def build_stage(all_stages: list[Stage]) -> Stage:
    """The stage the runtime stage copies its environment from."""
    runtime = all_stages[-1]
    for copy in runtime.all("COPY"):
        source = re.search(r"--from=(\S+)", copy.arguments)
        if source:
            return next(s for s in all_stages if s.name == source[1])
    raise ValueError("the runtime stage copies from no build stage")


def exec_form(arguments: str) -> list[str]:
    """A JSON-array CMD or HEALTHCHECK command (the exec form: the process gets the signals)."""
    value = json.loads(arguments)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"not an exec-form command: {arguments}")
    return value


def healthcheck_command(stage: Stage) -> list[str]:
    arguments = stage.last("HEALTHCHECK").arguments
    _, _, command = arguments.partition("CMD ")
    return exec_form(command.strip())


def environment(stage: Stage, root: Path, base: dict[str, str]) -> dict[str, str]:
    """The stage's ENV, with the image's paths moved under `root` and `$VAR` expanded from
    `base` (the environment the process would otherwise inherit)."""
    env = dict(base)
    for instruction in stage.all("ENV"):
        for word in shlex.split(instruction.arguments):
            name, _, value = word.partition("=")
            value = value.replace(IMAGE_VENV, str(root / IMAGE_VENV.lstrip("/")))
            env[name] = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: env.get(m[1] or m[2], ""), value)
    return env


def _ignored(path: Path) -> bool:
    # What .dockerignore keeps out of the context among the copied folders.
    return path.name == "__pycache__" or path.suffix == ".pyc"


def assemble(stage: Stage, root: Path, repo: Path = REPO) -> Path:
    """Carry out the stage's COPY steps from `repo` into `root` (the image's `/`); return the
    stage's working directory there."""
    workdir = PurePosixPath("/")
    for instruction in stage.instructions:
        if instruction.keyword == "WORKDIR":
            workdir = workdir / instruction.arguments
            (root / str(workdir).lstrip("/")).mkdir(parents=True, exist_ok=True)
        if instruction.keyword != "COPY":
            continue
        words = [w for w in instruction.arguments.split() if not w.startswith("--")]
        sources, destination = words[:-1], words[-1]
        target = root / str(workdir / destination).lstrip("/")
        into_folder = destination.endswith("/") or len(sources) > 1
        for source in sources:
            origin = repo / source
            if not origin.exists():
                raise FileNotFoundError(f"COPY {source} (line {instruction.line}): not in the repo")
            if origin.is_dir():
                shutil.copytree(
                    origin,
                    target,
                    dirs_exist_ok=True,
                    ignore=lambda folder, names: [n for n in names if _ignored(Path(folder) / n)],
                )
            else:
                path = target / origin.name if into_folder else target
                path.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, path)
    return root / str(workdir).lstrip("/")


def install_commands(stage: Stage, root: Path, *, constraints: bool = True) -> list[str]:
    """The stage's RUN commands that build the virtual environment, the venv moved under
    `root`, pip's cache allowed (and, for regenerating the constraints, without them)."""
    commands = []
    for instruction in stage.all("RUN"):
        if IMAGE_VENV not in instruction.arguments:
            continue
        command = instruction.arguments.replace(IMAGE_VENV, str(root / IMAGE_VENV.lstrip("/")))
        command = command.replace("--no-cache-dir ", "")
        if not constraints:
            command = re.sub(r"--constraint\s+\S+\s*", "", command)
        commands.append(command)
    if not commands:
        raise ValueError(f"no RUN in the stage FROM {stage.base} builds {IMAGE_VENV}")
    return commands


def build(
    root: Path, *, constraints: bool = True, repo: Path = REPO, log: IO[bytes] | None = None
) -> Path:
    """The build stage into `root`: returns the virtual environment's folder. pip's output
    goes to `log` when given."""
    stage = build_stage(load(repo / "Dockerfile"))
    workdir = assemble(stage, root, repo)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    # `python` as the image has it: this interpreter (`-m venv` bases the new one on the
    # interpreter this one was made from).
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    for command in install_commands(stage, root, constraints=constraints):
        subprocess.run(
            ["/bin/sh", "-c", command],
            cwd=workdir,
            env=env,
            check=True,
            stdout=log,
            stderr=subprocess.STDOUT if log is not None else None,
        )
    return root / IMAGE_VENV.lstrip("/")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned(text: str) -> dict[str, str]:
    """{package: version} of `name==version` lines (a constraints file, `pip freeze`)."""
    result = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, _, version = line.partition("==")
            result[canonical(name)] = version.strip()
    return result


def freeze(venv: Path) -> str:
    return subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "freeze", "--exclude", PROJECT],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def write_constraints() -> None:
    header = [line for line in CONSTRAINTS.read_text().splitlines() if line.startswith("#")]
    with tempfile.TemporaryDirectory() as folder:
        venv = build(Path(folder), constraints=False)
        frozen = freeze(venv)
    lines = [line for line in frozen.splitlines() if "==" in line]
    CONSTRAINTS.write_text("\n".join([*header, *lines]) + "\n")
    print(f"{CONSTRAINTS.relative_to(REPO)}: {len(lines)} packages")


if __name__ == "__main__":
    write_constraints()
