"""The `multicon` command: its help, its commands' flags, --config files, and bad input met with
one line on stderr, exit code 2 and nothing written."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from caption_fixtures import write_shapes_jsonl
from hub_fake import TOKEN
from test_hub import run_folder

from multicon.cli import ORDER, main

ROOT = Path(__file__).resolve().parents[1]
# subprocesses import this checkout's multicon, wherever they run
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
DEMO = ["--batch_size", "64", "--width", "4", "--log_with", "", "--progress_bar", "false"]


def python(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env or ENV, capture_output=True, text=True
    )


def one_line_error(capsys, *words: str) -> str:
    """The captured stderr, checked to be one line that starts with the command and holds
    ``words``."""
    captured = capsys.readouterr()
    err = captured.err
    assert err.count("\n") == 1 and err.startswith("multicon"), err
    for word in words:
        assert word in err, err
    return err


def test_help_lists_every_command_and_imports_no_torch(tmp_path):
    code = "import sys; from multicon.cli import main; rc = main(['--help']); "
    code += "print('torch imported:', 'torch' in sys.modules); sys.exit(rc)"
    done = python("-c", code, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for name in ORDER:  # one line each: the name, then what it does
        assert re.search(rf"^  {name} +\w", done.stdout, re.M), name
    assert done.stdout.rstrip().endswith("torch imported: False")


HUGE_PAGES_CHECK = """
import torch
x = torch.empty(8 << 20)
ptr, flags = x.data_ptr(), None
for line in open("/proc/self/smaps"):
    head = line.split()[0]
    if "-" in head and ":" not in head:
        lo, hi = (int(v, 16) for v in head.split("-"))
        inside = lo <= ptr < hi
    elif line.startswith("VmFlags") and inside:
        flags = line.split()[1:]
print("hg" in flags)
"""


@pytest.mark.parametrize(
    "start",
    [
        "from multicon.cli import main; main(['word2vec', '--help'])",
        "from multicon.cli import main; main(['bench', 'word2vec', '--help'])",
        # python -m multicon.recipes.word2vec (and accelerate launch -m ...)
        "import runpy, sys; sys.argv = ['x', '--help']\n"
        "try: runpy.run_module('multicon.recipes.word2vec', run_name='__main__', alter_sys=True)\n"
        "except SystemExit: pass",
    ],
    ids=["multicon word2vec", "multicon bench word2vec", "python -m multicon.recipes.word2vec"],
)
def test_word2vec_commands_ask_for_huge_pages_before_torch_allocates(tmp_path, start):
    """As recipes/word2vec_text8.py does (see tests/test_word2vec_recipe.py): the command sets
    THP_MEM_ALLOC_ENABLE before torch is imported, so a large tensor gets huge pages."""
    if not Path("/proc/self/smaps").exists():
        pytest.skip("needs Linux /proc/self/smaps")
    env = {k: v for k, v in ENV.items() if k != "THP_MEM_ALLOC_ENABLE"}
    done = python("-c", start + "\n" + HUGE_PAGES_CHECK, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == "True"


@pytest.mark.parametrize(
    "command, flag",
    [
        ("simclr", "--crop_min_scale"),
        ("moco", "--queue_size"),
        ("word2vec", "--window"),
        ("clip", "--train_data"),
        ("demo", "--proj_dim"),
        ("eval images", "--linear_probe"),
        ("eval captions", "--caption_columns"),
        ("eval words", "--analogies"),
        ("push", "repo_id"),
        ("bench word2vec", "--repeats"),
        ("bench images", "--modes"),
        ("bench captions", "--open_clip_model"),
    ],
)
def test_each_command_help_lists_its_flags(capsys, command, flag):
    assert main([*command.split(), "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: multicon {command} ")
    assert flag in out and "--config FILE" in out


def test_python_dash_m_runs_the_command_and_a_recipe(tmp_path):
    done = python("-m", "multicon", "--help", cwd=tmp_path)
    assert done.returncode == 0 and "commands:" in done.stdout, done.stderr
    done = python("-m", "multicon.recipes.simclr", "--help", cwd=tmp_path)
    assert done.returncode == 0 and "--crop_min_scale" in done.stdout, done.stderr


@pytest.mark.parametrize(
    "argv, words",
    [
        (["simclrr"], ["unknown command 'simclrr'", "did you mean 'simclr'"]),
        (["--bogus"], ["unknown option '--bogus'"]),
        (["eval"], ["give one of images, captions, words"]),
        (["eval", "pictures"], ["unknown command 'pictures'"]),
        (["demo", "--bogus", "1"], ["unknown flag '--bogus'"]),
        (["demo", "--epochs", "abc"], ["--epochs", "invalid int value: 'abc'"]),
        (["demo", "--optimizer", "rmsprop"], ["--optimizer", "'rmsprop'"]),
        (["demo", "--test_fraction", "2"], ["test_fraction must be in (0, 1)"]),
        (["demo", "stray"], ["unexpected argument 'stray'"]),
        (["demo", "--config"], ["--config needs a file"]),
        (["demo", "--config", "nowhere.yaml"], ["--config: no file nowhere.yaml"]),
    ],
)
def test_usage_errors_are_one_line_exit_2_and_write_nothing(tmp_path, capsys, argv, words):
    out = tmp_path / "run"
    if argv[0] == "demo" and argv[-1] != "--config":  # a run would write here
        argv = [*argv, "--output_dir", str(out)]
    assert main(argv) == 2
    one_line_error(capsys, *words)
    assert not out.exists()


@pytest.mark.parametrize(
    "name, text, words",
    [
        ("c.yaml", 'batch_size: "abc"\n', ["batch_size: expected an integer, got 'abc'"]),
        ("c.yaml", "batch_size: 2.5\n", ["batch_size: expected an integer, got 2.5"]),
        ("c.yaml", "batchsize: 8\n", ["unknown key 'batchsize'"]),
        ("c.yaml", "config: other.yaml\n", ["unknown key 'config'"]),
        ("c.yaml", "epochs: [1, 2]\n", ["epochs: expected one value"]),
        ("c.yaml", "epochs: [1\n", ["not valid YAML"]),
        ("c.json", '{"optimizer": "rmsprop"}', ["optimizer: 'rmsprop' is not one of"]),
        ("c.json", '{"progress_bar": "maybe"}', ["progress_bar: expected true or false"]),
        ("c.json", "[1, 2]", ["expected a mapping of flag: value, got a list"]),
        ("c.json", '{"epochs": 1,}', ["not valid JSON"]),
        ("c.toml", "epochs = 1\n", ["expected a .yaml, .yml or .json file"]),
        ("c.yaml", "test_fraction: 2\n", ["test_fraction must be in (0, 1)"]),
    ],
)
def test_bad_config_file_is_named_in_one_line(tmp_path, capsys, name, text, words):
    config = tmp_path / name
    config.write_text(text)
    out = tmp_path / "run"
    assert main(["demo", "--config", str(config), "--output_dir", str(out)]) == 2
    err = one_line_error(capsys, *words)
    assert str(config) in err or "test_fraction" in err  # a value refused after parsing
    assert not out.exists()


def test_config_file_gives_flags_and_the_command_line_wins(tmp_path, capsys):
    config = tmp_path / "demo.yaml"
    config.write_text(
        "max_steps: 5\nwidth: 4\nbatch_size: 64\nlog_with: ''\nprogress_bar: false\n"
        "eval_every: 0\nknn_k: 5\n"
    )
    out = tmp_path / "run"
    argv = ["demo", "--config", str(config), "--max_steps", "2", "--output_dir", str(out)]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 2  # the command line's, not the file's 5
    assert summary["args"]["width"] == 4 and summary["args"]["knn_k"] == 5  # the file's
    # the run records the command with the file's flags spelled out, then the command line's
    assert summary["command"].startswith("multicon demo --max_steps 5 --width 4")
    assert summary["command"].endswith(f"--max_steps 2 --output_dir {out}")
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    capsys.readouterr()

    # a used output folder is refused in one line, and left as it was
    assert main(["demo", "--config", str(config), "--output_dir", str(out)]) == 2
    one_line_error(capsys, "holds another run's work", "--overwrite_output_dir")
    # the digits model is not what `eval images` evaluates; a bad repo id sends nothing
    assert main(["eval", "images", "--model", str(out / "model"), "--data", str(tmp_path)]) == 2
    one_line_error(capsys, "holds a SmallConvEncoder model", "needs ImageEncoder")
    assert main(["push", str(out / "model"), "me/two words"]) == 2
    one_line_error(capsys, "'me/two words' is not a valid Hugging Face repo id")
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before


def saved_word2vec(folder: Path) -> Path:
    from multicon.text import Vocabulary, Word2Vec

    torch.manual_seed(0)
    words = ["king", "queen", "man", "woman", "paris", "france", "rome", "italy"]
    model = Word2Vec.from_vocab(Vocabulary(words, list(range(20, 12, -1))), 8)
    model.save_pretrained(folder)
    return folder


def test_eval_words_scores_a_saved_word2vec_as_the_recipe_does(tmp_path, capsys):
    from multicon.eval.words import evaluate_analogies, evaluate_similarity
    from multicon.text import Word2Vec

    model_dir = saved_word2vec(tmp_path / "w2v")
    questions = tmp_path / "q.txt"
    questions.write_text(": capitals\nparis france rome italy\n: family\nking queen man woman\n")
    pairs = tmp_path / "ws.tsv"
    pairs.write_text("king\tqueen\t8\nking\tparis\t1\nman\twoman\t9\nrome\tfrance\t3\n")
    argv = ["eval", "words", "--model", str(model_dir), "--analogies", str(questions)]
    assert main([*argv, "--wordsim", str(pairs), "--simlex", ""]) == 0
    report = json.loads(capsys.readouterr().out)
    model = Word2Vec.from_pretrained(model_dir)
    analogies = evaluate_analogies(model.vectors, model.vocab, questions)
    assert report["analogy"] == round(analogies.accuracy, 4) and report["analogy_answered"] == 2
    ws = evaluate_similarity(model.vectors, model.vocab, pairs).spearman
    assert report["ws353"] == round(ws, 4) and "simlex999" not in report
    assert report["vocab_size"] == 8 and report["command"].startswith("multicon eval words")
    # nothing to score is refused, not reported as a number
    nothing = ["--analogies", "", "--wordsim", "", "--simlex", ""]
    assert main(["eval", "words", "--model", str(model_dir), *nothing]) == 2
    one_line_error(capsys, "nothing to evaluate")


def test_eval_captions_reports_the_recall_of_a_saved_dual_encoder(tmp_path, capsys):
    from multicon.data.caption_sources import open_captions
    from multicon.encoders.dual import DualEncoder
    from multicon.encoders.dual_args import DualEncoderArgs, build_dual_encoder
    from multicon.eval.retrieval import evaluate_retrieval

    test = write_shapes_jsonl(tmp_path / "data", "test", per_concept=1, seed=1)
    args = DualEncoderArgs(text_width=32, text_depth=1, text_heads=2, embed_dim=16)
    captions = [json.loads(line)["captions"][0] for line in test.read_text().splitlines()]
    build_dual_encoder(args, captions * 3, 16).save_pretrained(tmp_path / "dual")
    argv = ["eval", "captions", "--model", str(tmp_path / "dual"), "--data", str(test)]
    assert main([*argv, "--caption_columns", "captions"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("| direction | R@1 | R@5 | R@10 |")
    report = json.loads(out[out.index("\n{") :])
    corpus = open_captions(str(test), caption_columns=["captions"])
    recall = evaluate_retrieval(DualEncoder.from_pretrained(tmp_path / "dual"), corpus)
    assert report["retrieval"] == {k: round(v, 2) for k, v in recall.items()}
    assert report["test_images"] == len(corpus)
    # a word2vec folder is named for what it is
    saved_word2vec(tmp_path / "w2v")
    assert main(["eval", "captions", "--model", str(tmp_path / "w2v"), "--data", str(test)]) == 2
    one_line_error(capsys, "holds a Word2Vec model", "use `multicon eval words`")


def foreign_folder(tmp_path: Path) -> Path:
    """A model folder of another library: weights, config and card, none of them multicon's."""
    folder = tmp_path / "foreign"
    folder.mkdir()
    (folder / "config.json").write_text('{"hidden_size": 8, "model_type": "bert"}')
    (folder / "model.safetensors").write_bytes(b"\0" * 16)
    (folder / "README.md").write_text("---\nlibrary_name: transformers\n---\n# a BERT\n")
    return folder


@pytest.mark.parametrize("kind", ["images", "captions", "words"])
def test_eval_of_a_folder_that_is_not_a_multicon_model(tmp_path, capsys, kind):
    folder = foreign_folder(tmp_path)
    flags = {"images": ["--data", str(tmp_path)], "captions": ["--data", str(tmp_path)]}
    assert main(["eval", kind, "--model", str(folder), *flags.get(kind, [])]) == 2
    one_line_error(capsys, f"{folder} is not a multicon model")
    assert main(["eval", kind, "--model", str(tmp_path / "none"), *flags.get(kind, [])]) == 2
    one_line_error(capsys, "no model folder")
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
    ]


def test_push_uploads_a_multicon_folder_and_refuses_bad_input(hub, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    folder = str(run_folder(tmp_path))
    for repo_id in ("fake-user/two words", "a/b/c"):
        assert main(["push", folder, repo_id]) == 2
        one_line_error(capsys, f"{repo_id!r} is not a valid Hugging Face repo id")
    assert main(["push", str(foreign_folder(tmp_path)), "fake-user/bert"]) == 2
    one_line_error(capsys, "is not a multicon model", "library_name: multicon")
    assert main(["push", str(tmp_path / "nowhere"), "fake-user/x"]) == 2
    one_line_error(capsys, "no run folder")
    assert main(["push", folder, "fake-user/x", "--public"]) == 2
    one_line_error(capsys, "unknown flag '--public'")
    assert hub.requests == []  # nothing was sent
    assert main(["push", folder, "fake-user/from-cli", "--private"]) == 0
    assert capsys.readouterr().out.startswith("https://huggingface.co/fake-user/from-cli/commit/")
    assert sorted(hub.commits[0]["files"]) == ["README.md", "config.json", "model.safetensors"]


def test_bench_images_from_the_command(capsys):
    argv = ["bench", "images", "--device", "cpu", "--image_size", "16", "--batch_size", "8"]
    argv += ["--steps", "1", "--warmup", "0", "--modes", "ceiling", "--cifar_stem", "false"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images_per_s"]["ceiling"] > 0
    assert report["command"].startswith("multicon bench images --device cpu")


def test_a_failed_push_after_training_exits_1_and_keeps_the_run(tmp_path, capsys, monkeypatch):
    """The recipe records the failed upload (its one line is printed); the command says so in
    its exit code, so a script or CI step sees it."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_TOKEN", TOKEN)  # a token, but offline: the upload fails
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    argv = ["demo", "--output_dir", str(tmp_path), "--max_steps", "1", "--batch_size", "32"]
    argv += ["--eval_every", "0", "--width", "4", "--proj_dim", "8", "--push_to_hub", "me/d"]
    assert main(argv) == 1
    assert "push_to_hub:" in capsys.readouterr().err
    assert json.loads((tmp_path / "summary.json").read_text())["push"]["error"]
    assert (tmp_path / "model" / "model.safetensors").is_file()
