"""A throwaway git + DVC copy of this project, driven with the real `dvc`: what the end-to-end tests and
the benchmarks run the pipeline in."""

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
OUTPUTS = ("dvc.lock", "data", "models", "metrics")
TRAINING_STAGES = {"train@teacher", "train@student", "distill", "evaluate", "export"}
ALL_STAGES = {"check_params", "prepare", *TRAINING_STAGES}


def project_files() -> list[str]:
    """The files git tracks (as they are on disk), minus pipeline outputs: what a clone or a queued
    experiment sees, so a module that git does not track fails here as it would there."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout.splitlines()
    def copied(name: str) -> bool:
        # Outputs are made by the pipeline; the empty folders that params.yaml's paths name are not.
        return name.split("/")[0] not in OUTPUTS or name.endswith("/.gitkeep")

    return [name for name in listed if copied(name) and (ROOT / name).is_file()]


def stages_run(dvc_output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", dvc_output))


class Repo:
    def __init__(self, path: Path):
        self.path = path
        self.env = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "PYTHONUNBUFFERED": "1",
            "DVC_NO_ANALYTICS": "1",
            "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
            "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.invalid",
        }
        self.env.pop("KD_DEBUG", None)

    @classmethod
    def copy_of_project(cls, path: Path, **overrides: dict) -> "Repo":
        """The project in a new git repo, with params sections updated from `overrides`."""
        for name in project_files():
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, path / name)
        repo = cls(path)
        repo.update_params(**overrides)
        repo.run("git", "init", "-q", "-b", "main")
        repo.commit("project")
        return repo

    def update_params(self, **overrides: dict) -> None:
        values = yaml.safe_load(self.read("params.yaml"))
        for section, changes in overrides.items():
            values[section].update(changes)
        (self.path / "params.yaml").write_text(yaml.safe_dump(values, sort_keys=False))

    def attempt(self, *command: str) -> subprocess.CompletedProcess:
        return subprocess.run(command, cwd=self.path, env=self.env, capture_output=True, text=True)

    def run(self, *command: str) -> str:
        result = self.attempt(*command)
        assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    def dvc(self, *args: str) -> str:
        return self.run(sys.executable, "-m", "dvc", *args)

    def start_dvc(self, *args: str) -> subprocess.Popen:
        """`dvc` in its own process group, as a terminal would run it, with output streamed line by line."""
        return self.start(sys.executable, "-m", "dvc", *args)

    def start(self, *command: str) -> subprocess.Popen:
        """A command in its own process group, its output and errors in one stream, read line by line.

        Ctrl-C's default action is restored for it: a test run started in the background (`make test &`,
        some CI runners) inherits SIGINT as ignored, and the stages would then never see the interrupt.
        """
        return subprocess.Popen(
            command, cwd=self.path, env=self.env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )

    def commit(self, message: str) -> None:
        self.run("git", "add", "-A")
        self.run("git", "commit", "-q", "-m", message)

    def read(self, name: str) -> bytes:
        return (self.path / name).read_bytes()

    def lock_entries(self, *leave_out: str) -> dict:
        """dvc.lock's stage entries, less the stages named."""
        stages = yaml.safe_load(self.read("dvc.lock"))["stages"]
        return {name: entry for name, entry in stages.items() if name not in leave_out}
