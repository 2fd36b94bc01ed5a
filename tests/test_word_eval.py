"""Word-vector evaluation and the word2vec file formats."""

import pytest
import torch

from multicon.eval.words import evaluate_analogies, evaluate_similarity, most_similar
from multicon.text.vocab import Vocabulary
from multicon.text.word2vec import Word2Vec
from multicon.text.word2vec_format import load_word2vec_format, save_word2vec_format

# man : king = woman : queen in a 2-d toy space (x: royalty, y: gender)
WORDS = ["man", "woman", "king", "queen", "apple", "rare"]
VECS = torch.tensor([[0.1, 1.0], [0.1, -1.0], [1.0, 1.0], [1.0, -1.0], [-1.0, 0.05], [0.5, 0.1]])
VOCAB = Vocabulary(WORDS, [60, 50, 40, 30, 20, 1])


def test_analogies_per_section_total_and_oov(tmp_path):
    path = tmp_path / "questions-words.txt"
    path.write_text(
        ": royal\nMan King Woman Queen\nWoman Queen Man King\n"
        ": broken\nman king woman apple\nman king unicorn queen\nman king woman rare\n"
    )
    result = evaluate_analogies(VECS, VOCAB, path, restrict_vocab=5)
    assert result.sections == {"royal": (2, 2), "broken": (0, 1)}
    assert result.oov == 2  # 'unicorn' is unknown, 'rare' is outside restrict_vocab
    assert result.accuracy == pytest.approx(2 / 3)
    assert result.section_accuracy()["royal"] == 1.0


def test_similarity_spearman_counts_oov(tmp_path):
    path = tmp_path / "ws.tsv"
    path.write_text(
        "# comment\nking\tqueen\t8.0\nking\tapple\t1.0\nman\twoman\t6.0\nking\tunicorn\t5\n"
    )
    result = evaluate_similarity(VECS, VOCAB, path)
    assert result.pairs == 3 and result.oov == 1
    assert result.spearman == pytest.approx(0.5)


def test_bad_evaluation_files(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text(": s\na b c\n")
    with pytest.raises(ValueError, match="needs 4 words"):
        evaluate_analogies(VECS, VOCAB, bad)
    with pytest.raises(FileNotFoundError):
        evaluate_similarity(VECS, VOCAB, tmp_path / "missing.tsv")
    with pytest.raises(KeyError, match="unicorn"):
        most_similar(VECS, VOCAB, "unicorn")


def test_most_similar_excludes_inputs():
    top = most_similar(VECS, VOCAB, ["king", "woman"], ["man"], topn=1)
    assert top[0][0] == "queen"


@pytest.mark.parametrize("binary", [False, True])
def test_word2vec_format_read_by_gensim(tmp_path, binary):
    gensim_models = pytest.importorskip("gensim.models")
    vecs = torch.randn(len(WORDS), 7)
    path = tmp_path / ("v.bin" if binary else "v.txt")
    save_word2vec_format(path, WORDS, vecs, binary=binary)
    kv = gensim_models.KeyedVectors.load_word2vec_format(str(path), binary=binary)
    assert kv.index_to_key == WORDS
    assert torch.allclose(torch.from_numpy(kv.vectors), vecs, atol=1e-5)
    words, again = load_word2vec_format(path, binary=binary)
    assert words == WORDS and torch.allclose(again, vecs, atol=1e-5)


def test_word2vec_hub_round_trip_and_export(tmp_path):
    model = Word2Vec.from_vocab(VOCAB, dim=4)
    model.save_pretrained(tmp_path / "m")
    assert {p.name for p in (tmp_path / "m").iterdir()} >= {
        "model.safetensors",
        "config.json",
        "vocab.txt",
    }
    again = Word2Vec.from_pretrained(tmp_path / "m")
    assert again.vocab.words == WORDS
    assert torch.equal(again.vectors, model.vectors)
    model.save_word2vec_format(tmp_path / "v.bin", binary=True)
    words, vecs = load_word2vec_format(tmp_path / "v.bin", binary=True)
    assert words == WORDS and torch.equal(vecs, model.vectors)


def test_word_lookups_match_gensim(tmp_path):
    gensim_models = pytest.importorskip("gensim.models")
    model = Word2Vec.from_vocab(VOCAB, dim=6)
    assert "queen" in model and "unicorn" not in model
    assert torch.equal(model["queen"], model.vectors[VOCAB["queen"]])
    assert torch.equal(model[["man", "king"]], model.vectors[VOCAB.encode(["man", "king"])])
    model.save_word2vec_format(tmp_path / "v.txt")
    kv = gensim_models.KeyedVectors.load_word2vec_format(str(tmp_path / "v.txt"))
    for a, b in [("king", "queen"), ("man", "woman"), ("king", "man")]:
        assert model.similarity(a, b) == pytest.approx(float(kv.similarity(a, b)), abs=1e-5)
    with pytest.raises(KeyError, match="unicorn"):
        model[["king", "unicorn"]]
    with pytest.raises(KeyError, match="unicorn"):
        model.similarity("unicorn", "king")
