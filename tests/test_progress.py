"""tqdm bars on the long waits: shown when asked, on the main process only; none with
``--progress_bar false``."""

import random

import pytest
import torch
from textures import texture_images, write_image_folder

from multicon.data.images import load_image_folder
from multicon.eval.features import extract_features
from multicon.pairs.views import SimCLRViews
from multicon.text.vocab import Vocabulary


def test_image_decoding_and_feature_extraction_show_bars(tmp_path, capfd):
    write_image_folder(tmp_path, texture_images(2, size=8, seed=0))
    data = load_image_folder(tmp_path, progress=True)
    encoder = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4))
    extract_features(encoder, data, SimCLRViews(size=8), progress=True, desc="feats")
    err = capfd.readouterr().err
    assert "decoding images" in err and "/8 " in err
    assert "feats" in err
    load_image_folder(tmp_path)  # progress is off by default in the library
    assert capfd.readouterr().err == ""


def test_no_bar_on_other_local_ranks(capfd, monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "1")
    Vocabulary.build([["a", "b"], ["a"]], progress=True)
    assert capfd.readouterr().err == ""
    monkeypatch.setenv("LOCAL_RANK", "0")
    Vocabulary.build([["a", "b"], ["a"]], progress=True)
    assert "vocabulary" in capfd.readouterr().err


@pytest.mark.parametrize("flag", ["true", "false"])
def test_word2vec_recipe_bars_follow_progress_bar_flag(tmp_path, capfd, flag):
    from multicon.recipes import word2vec

    rng = random.Random(3)
    lines = [" ".join(f"t{t % 8}w{rng.randrange(4)}" for _ in range(10)) for t in range(200)]
    (tmp_path / "corpus.txt").write_text("\n".join(lines) + "\n")
    word2vec.main(
        [
            *("--corpus", str(tmp_path / "corpus.txt"), "--min_count", "1", "--dim", "8"),
            *("--epochs", "1", "--batch_size", "256", "--output_dir", str(tmp_path / "run")),
            *("--log_with", "", "--analogies", "", "--wordsim", "", "--simlex", ""),
            *("--sample", "0", "--progress_bar", flag),
        ]
    )
    err = capfd.readouterr().err
    if flag == "true":
        assert "vocabulary and token ids" in err and "final token ids" in err
    else:
        assert "%|" not in err and "token ids" not in err, err
