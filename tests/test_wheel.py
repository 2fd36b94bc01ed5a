"""`pip install` of the built wheel gives a working `multicon` command: the wheel is built from a
copy of the source, installed offline into a fresh virtual environment (its dependencies seen
from this environment), and run from outside the repository."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*args, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"{args}: {done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from a copy of the source: an in-tree build writes build/ and
    *.egg-info beside the code, which must not land in the repository."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.so")
    shutil.copytree(ROOT / "multicon", source / "multicon", ignore=ignore)
    out = tmp / "dist"
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index"]
    run(*pip, "--wheel-dir", out, source, cwd=tmp)
    (built,) = out.glob("multicon-*.whl")
    return built


def test_wheel_holds_the_recipes_kernels_and_the_command(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        entry_points = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = zf.read(entry_points[0]).decode() if entry_points else ""
    for recipe in ("simclr", "moco", "word2vec", "clip", "demo"):
        assert f"multicon/recipes/{recipe}.py" in names
    kernels = {f"multicon/csrc/{p.name}" for p in (ROOT / "multicon" / "csrc").glob("*.c")}
    assert kernels and kernels <= names
    assert {"multicon/cli/__init__.py", "multicon/__main__.py"} <= names
    assert "multicon = multicon.cli:main" in scripts


def test_installed_command_runs_help_and_a_tiny_recipe(wheel, tmp_path):
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-index", "--no-deps",
        "--quiet", wheel, cwd=tmp_path)  # fmt: skip
    # the dependencies (torch, transformers ...) from this environment, after the venv's own
    # site-packages: a path in a .pth file is appended and its folder's own .pth files (this
    # environment's editable install of multicon) are not read
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                    cwd=tmp_path).stdout.strip())  # fmt: skip
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "project_dependencies.pth").write_text("\n".join(sorted(ours)) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(HF_HUB_OFFLINE="1", PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    # (import multicon loads no torch: this is quick)
    where = run(python, "-c", "import multicon.recipes as r; print(r.__file__)",
                cwd=tmp_path, env=env).stdout.strip()  # fmt: skip
    assert Path(where).is_relative_to(site), where  # the installed copy, not the repository's

    command = venv / "bin" / "multicon"
    done = run(command, "--help", cwd=tmp_path, env=env)
    assert "demo" in done.stdout and "eval" in done.stdout
    out = tmp_path / "run"
    tiny = ["--max_steps", "2", "--batch_size", "64", "--width", "4", "--eval_every", "0"]
    tiny += ["--log_with", "", "--progress_bar", "false", "--output_dir", out]
    run(command, "demo", *tiny, cwd=tmp_path, env=env)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["command"].startswith("multicon demo")
    assert {p.name for p in (out / "model").iterdir()} >= {"model.safetensors", "config.json"}
