"""Stage check_params: validates the whole params.yaml before any other stage touches its outputs.

DVC deletes a stage's outputs just before it runs the stage, so a stage that rejects a bad param
has already lost its previous outputs. This stage runs first, reads no data and writes a marker
whose content never changes: every other stage depends on it, so a valid change passes through
without rerunning anything, and an invalid one stops `dvc repro` or `dvc exp run` while every
output and dvc.lock are still as they were.
"""

from pathlib import Path

from common import cli, outputs, params

MARKER = Path("data/params.checked")


def main() -> None:
    params.load()
    outputs.write_text(MARKER, "params.yaml passed the schema in common/params.py\n")
    print(f"{params.PARAMS_FILE}: valid")


if __name__ == "__main__":
    cli.run(main, end_process=True)
