"""Captions as users keep them: CSV/TSV tables, image folders with .txt files, tar shards
(indexed and streamed), one --train_data flag for all, and the converter to shards."""

from __future__ import annotations

import csv
import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest
import torch
from PIL import Image
from test_clip_recipe import SMALL, load_script
from torchvision.transforms import v2
from torchvision.transforms.functional import pil_to_tensor

from multicon import TrainConfig, Trainer, methods
from multicon.checkpoint import checkpoint_dir
from multicon.data.caption_files import CaptionTable, CaptionTextFolder
from multicon.data.caption_sources import open_captions
from multicon.data.caption_stream import CaptionShardStream, StreamedCaptionPairs
from multicon.data.captions import CaptionFolder
from multicon.data.shards import CaptionShards, expand_braces, list_shards
from multicon.encoders.tokenization import train_sentencepiece_tokenizer
from multicon.recipes import clip as clip_recipe

WORDS = ["red", "green", "blue", "white", "black", "grey", "pink", "brown"]


def picture(i: int, size=(12, 10)) -> Image.Image:
    """An image that differs from picture(j) for every j != i."""
    im = Image.new("RGB", size, (i * 37 % 256, i * 91 % 256, i * 53 % 256))
    im.putpixel((i % size[0], 0), (255, 255, 255))
    return im


def captions_of(i: int) -> list[str]:
    return [f"a {WORDS[i % 8]} picture number {i}", f"{WORDS[(i + 3) % 8]} and {WORDS[i % 8]}"]


def encode(im: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt)
    return buf.getvalue()


def write_tar(path: Path, members: list[tuple[str, bytes]]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def write_shards(folder: Path, n: int, per_shard: int, fmt="PNG", ext="png") -> str:
    """``n`` samples (key = index) in shards of ``per_shard``, written with tarfile directly."""
    folder.mkdir(parents=True, exist_ok=True)
    for s in range(-(-n // per_shard)):
        members = []
        for i in range(s * per_shard, min((s + 1) * per_shard, n)):
            members += [(f"{i:04d}.{ext}", encode(picture(i), fmt))]
            members += [(f"{i:04d}.txt", "\n".join(captions_of(i)).encode())]
        write_tar(folder / f"shard-{s:03d}.tar", members)
    return str(folder / f"shard-{{000..{s:03d}}}.tar")


def same_pixels(a: Image.Image, b: Image.Image) -> bool:
    return a.convert("RGB").tobytes() == b.convert("RGB").tobytes()


@pytest.fixture(scope="module")
def tokenizer():
    texts = [c for i in range(40) for c in captions_of(i)]
    return train_sentencepiece_tokenizer(texts, vocab_size=60, max_length=12)


# -- the forms --------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix,delimiter", [(".csv", ","), (".tsv", "\t")])
def test_table_reads_paths_relative_to_the_file_and_every_caption_column(
    tmp_path, suffix, delimiter
):
    (tmp_path / "img").mkdir()
    rows = []
    for i in range(5):
        picture(i).save(tmp_path / f"img/{i}.png")
        first, second = captions_of(i)
        rows.append({"filepath": f"img/{i}.png", "title": first, "alt": second, "other": "x"})
    rows[2]["alt"] = ""  # an empty caption: dropped and counted
    path = tmp_path / f"meta{suffix}"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)
    corpus = open_captions(str(path), image_column="filepath", caption_columns=["title", "alt"])
    assert isinstance(corpus, CaptionTable) and len(corpus) == 5
    assert corpus.captions[0] == captions_of(0) and corpus.captions[2] == captions_of(2)[:1]
    assert dict(corpus.skipped) == {"empty_caption": 1}
    assert all(same_pixels(corpus.image(i), picture(i)) for i in range(5))


def test_text_folder_pairs_each_image_with_its_txt(tmp_path):
    (tmp_path / "sub").mkdir()
    for i in range(4):
        folder = tmp_path / ("sub" if i % 2 else "")
        picture(i).save(folder / f"{i}.png")
        (folder / f"{i}.txt").write_text("\n".join(captions_of(i)) + "\n\n")
    picture(9).save(tmp_path / "no_text.png")
    (tmp_path / "no_image.txt").write_text("a caption without its image")
    corpus = open_captions(str(tmp_path))
    assert isinstance(corpus, CaptionTextFolder)
    by_name = {p.stem: i for i, p in enumerate(corpus.paths)}
    assert sorted(by_name) == ["0", "1", "2", "3"]
    for i in range(4):
        assert corpus.captions[by_name[str(i)]] == captions_of(i)
        assert same_pixels(corpus.image(by_name[str(i)]), picture(i))
    assert dict(corpus.skipped) == {"empty_caption": 4, "missing_caption": 1, "missing_image": 1}
    with pytest.raises(FileNotFoundError, match=r"no_image\.txt \(no image .*\): image file not"):
        CaptionTextFolder(tmp_path, on_error="raise")
    (tmp_path / "no_image.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"no_text\.txt: caption file not found"):
        CaptionTextFolder(tmp_path, on_error="raise")


def test_shards_with_jpg_webp_png_and_json_captions_read_indexed_and_streamed(tmp_path):
    images = {"jpg": "JPEG", "webp": "WEBP", "png": "PNG"}
    members = []
    for i, (ext, fmt) in enumerate(images.items()):
        members.append((f"part/{i:03d}.{ext}", encode(picture(i), fmt)))
        if i == 1:  # img2dataset's .json, with a list under one of the named keys
            meta = {"caption": captions_of(i)[0], "alt": [captions_of(i)[1]], "url": "x"}
            members.append((f"part/{i:03d}.json", json.dumps(meta).encode()))
        else:
            members.append((f"part/{i:03d}.txt", "\n".join(captions_of(i)).encode()))
    write_tar(tmp_path / "a.tar", members)
    pattern = str(tmp_path / "{a}.tar")
    corpus = open_captions(pattern, caption_columns=["caption", "alt"])
    assert isinstance(corpus, CaptionShards)
    assert corpus.keys == ["part/000", "part/001", "part/002"]
    assert corpus.captions == [captions_of(i) for i in range(3)]
    for i, (ext, fmt) in enumerate(images.items()):
        expected = Image.open(io.BytesIO(encode(picture(i), fmt)))
        assert same_pixels(corpus.image(i), expected), ext
    stream = open_captions(pattern, caption_columns=["caption", "alt"], stream=True)
    assert isinstance(stream, CaptionShardStream) and len(stream) == 3
    assert stream.flat_captions()[0] == [c for i in range(3) for c in captions_of(i)]


def test_one_flag_tells_the_forms_apart_by_path(tmp_path):
    jsonl = tmp_path / "train.jsonl"
    picture(0).save(tmp_path / "0.png")
    jsonl.write_text(json.dumps({"image": "0.png", "captions": captions_of(0)}) + "\n")
    assert isinstance(open_captions(str(jsonl)), CaptionFolder)
    pattern = write_shards(tmp_path / "shards", 4, per_shard=2)
    assert isinstance(open_captions(pattern, stream=True), CaptionShardStream)
    assert expand_braces("s-{8..10}.tar") == ["s-8.tar", "s-9.tar", "s-10.tar"]
    assert [p.name for p in list_shards(str(tmp_path / "shards" / "*.tar"))] == [
        "shard-000.tar",
        "shard-001.tar",
    ]
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match=r"cannot tell the caption form of .*notes\.txt"):
        open_captions(str(tmp_path / "notes.txt"))
    with pytest.raises(FileNotFoundError, match="absent.csv does not exist"):
        open_captions(str(tmp_path / "absent.csv"))


# -- streaming --------------------------------------------------------------------------------
def epoch_ids(pairs, batch_size, epoch, rank=0, world_size=1):
    return [b.key_id.tolist() for b in pairs.batches(batch_size, epoch=epoch, device="cpu",
                                                     rank=rank, world_size=world_size)]  # fmt: skip


def test_two_ranks_by_two_workers_cover_each_sample_exactly_once(tmp_path, tokenizer):
    stream = CaptionShardStream(write_shards(tmp_path, 24, per_shard=3))  # 8 shards
    pairs = StreamedCaptionPairs(stream, tokenizer, transform=pil_to_tensor, num_workers=2)
    assert pairs.num_batches(3, world_size=2) == 4
    for epoch in (0, 1):
        seen = []
        for rank in (0, 1):
            batches = epoch_ids(pairs, 3, epoch, rank, world_size=2)
            assert len(batches) == 4  # the same steps on every process
            seen += [i for b in batches for i in b]
        assert sorted(seen) == list(range(24)), epoch
    # each reader (rank, worker) reads its own shards
    readers = [set(stream.readers_shards(r, 4)) for r in range(4)]
    assert set().union(*readers) == set(range(8)) and sum(map(len, readers)) == 8


def test_shuffle_is_a_function_of_seed_and_epoch(tmp_path, tokenizer):
    stream = CaptionShardStream(write_shards(tmp_path, 20, per_shard=5))
    crop = v2.Compose([v2.ToImage(), v2.RandomResizedCrop(6, scale=(0.3, 1.0)), v2.ToDtype(
        torch.float32, scale=True)])  # fmt: skip

    def run(seed, epoch):
        pairs = StreamedCaptionPairs(stream, tokenizer, transform=crop, seed=seed, shuffle_buffer=6)
        batches = list(pairs.batches(4, epoch=epoch, device="cpu"))
        ids = [i for b in batches for i in b.key_id.tolist()]
        return ids, torch.cat([b.query for b in batches]), [b.key["input_ids"] for b in batches]

    ids, images, tokens = run(0, 0)
    again = run(0, 0)
    assert ids == again[0] and torch.equal(images, again[1])
    assert all(torch.equal(a, b) for a, b in zip(tokens, again[2], strict=True))
    assert sorted(ids) == list(range(20))
    assert run(0, 1)[0] != ids and run(1, 0)[0] != ids
    # not merely the shard order: samples of one shard are spread out
    assert any(abs(a // 5 - b // 5) > 0 for a, b in zip(ids, ids[1:], strict=False))
    assert ids[:5] != sorted(ids[:5])


class TinyImages(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 6 * 6, 8))

    def forward(self, x):
        return self.net(x)


class TinyText(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.EmbeddingBag(60, 8)

    def forward(self, tokens):
        return self.emb(tokens["input_ids"], per_sample_weights=None)


def test_resume_mid_epoch_replays_the_stream_exactly(tmp_path, tokenizer):
    pattern = write_shards(tmp_path / "data", 24, per_shard=4)
    transform = v2.Compose([v2.ToImage(), v2.RandomResizedCrop(6), v2.ToDtype(torch.float32)])

    def fit(out, **kw):
        torch.manual_seed(0)
        model = methods.clip(TinyImages(), TinyText(), 0.1, learnable=False)
        pairs = StreamedCaptionPairs(
            CaptionShardStream(pattern), tokenizer, transform=transform, seed=3, shuffle_buffer=5
        )
        cfg = TrainConfig(output_dir=str(out), epochs=2, batch_size=4, log_with="",
                          progress_bar=False, eval_every=0, checkpoint_every=1,
                          keep_checkpoints=0, **kw)  # fmt: skip
        return model, Trainer(model, pairs, cfg).fit()

    full, result = fit(tmp_path / "full")
    assert result.global_step == 12
    stopped = tmp_path / "stopped" / "checkpoints"
    stopped.mkdir(parents=True)
    src = checkpoint_dir(tmp_path / "full" / "checkpoints", 8)  # mid-epoch 1
    shutil.copytree(src, checkpoint_dir(stopped, 8))
    torch.manual_seed(1234)
    resumed, out = fit(tmp_path / "stopped", resume="latest")
    assert out.global_step == 12
    for name, value in full.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name


def test_streamed_bad_records_are_skipped_and_counted_or_raise_with_the_key(tmp_path, tokenizer):
    members = []
    for i in range(8):
        members += [
            (f"{i}.png", encode(picture(i), "PNG")),
            (f"{i}.txt", captions_of(i)[0].encode()),
        ]
    members[2] = ("1.png", b"not an image")  # unreadable
    members[5] = ("2.txt", b"  \n")  # no caption
    del members[6]  # 3.png: a key with a caption and no image
    write_tar(tmp_path / "s-0.tar", members)
    stream = CaptionShardStream(str(tmp_path / "s-{0..0}.tar"))
    pairs = StreamedCaptionPairs(stream, tokenizer, transform=pil_to_tensor)
    ids = [i for e in (0, 1) for b in epoch_ids(pairs, 2, e) for i in b]
    assert 1 not in ids and 2 not in ids and 3 not in ids
    assert dict(stream.skipped) == {
        "unreadable_image": 1,
        "empty_caption": 1,
        "no_caption": 1,
        "missing_image": 1,
    }  # each once, over two epochs
    strict = CaptionShardStream(str(tmp_path / "s-{0..0}.tar"), on_error="raise")
    pairs = StreamedCaptionPairs(strict, tokenizer, transform=pil_to_tensor)
    with pytest.raises((ValueError, FileNotFoundError), match=r"s-0\.tar:\d: "):
        epoch_ids(pairs, 2, 0)


# -- bad input --------------------------------------------------------------------------------
def test_bad_input_names_the_file_and_the_problem(tmp_path, tokenizer):
    table = tmp_path / "pairs.csv"
    table.write_text("file,text\na.png,a caption\n")
    with pytest.raises(ValueError, match=r"pairs\.csv: no column 'image', 'caption'.*\['file'"):
        CaptionTable(table)
    picture(0).save(tmp_path / "a.png")
    table.write_text("file,text\na.png,a caption\ngone.png,lost\n")
    with pytest.raises(FileNotFoundError, match=r"pairs\.csv:3 .*gone\.png.*not found"):
        CaptionTable(table, image_column="file", caption_columns="text", on_error="raise")
    with pytest.raises(ValueError, match=r"no shard files match .*nothing-\*\.tar.*empty"):
        list_shards(str(tmp_path / "nothing-*.tar"))
    write_tar(tmp_path / "s-0.tar", [("0.png", encode(picture(0), "PNG"))])
    with pytest.raises(FileNotFoundError, match=r"shard .*s-1\.tar .*does not exist"):
        CaptionShardStream(str(tmp_path / "s-{0..1}.tar"))
    (tmp_path / "s-1.tar").write_bytes(b"this is not a tar archive" * 40)
    with pytest.raises(ValueError, match=r"s-1\.tar: not an uncompressed tar file"):
        CaptionShardStream(str(tmp_path / "s-{0..1}.tar"))
    with pytest.raises(ValueError, match=r"s-1\.tar: not an uncompressed tar file"):
        CaptionShards(str(tmp_path / "s-{0..1}.tar"))
    pattern = write_shards(tmp_path / "two", 4, per_shard=2)
    pairs = StreamedCaptionPairs(CaptionShardStream(pattern), tokenizer, transform=pil_to_tensor)
    with pytest.raises(ValueError, match="2 shards cannot be split over 3 processes"):
        pairs.num_batches(1, world_size=3)


# -- the converter and the recipe -------------------------------------------------------------
def test_converter_round_trips_jsonl_and_datasets_to_shards(tmp_path):
    import datasets

    (tmp_path / "images").mkdir()
    lines = []
    for i in range(5):
        fmt, ext = ("JPEG", "jpg") if i % 2 else ("PNG", "png")
        (tmp_path / f"images/{i}.{ext}").write_bytes(encode(picture(i), fmt))
        lines.append(json.dumps({"image": f"images/{i}.{ext}", "captions": captions_of(i)}))
    (tmp_path / "train.jsonl").write_text("\n".join(lines))
    tool = load_script("tools/captions_to_shards.py")
    pattern = tool.main(["--input", str(tmp_path / "train.jsonl"), "--output_dir",
                         str(tmp_path / "s1"), "--samples_per_shard", "2"])  # fmt: skip
    original = CaptionFolder(tmp_path / "train.jsonl")
    shards = CaptionShards(pattern)
    assert len(list_shards(pattern)) == 3 and shards.captions == original.captions
    for i in range(5):  # the very bytes: nothing re-encoded
        assert shards.image_bytes(i) == original.paths[i].read_bytes()
    assert json.loads((tmp_path / "s1" / "sizes.json").read_text()) == {
        "shard-0.tar": 2,
        "shard-1.tar": 2,
        "shard-2.tar": 1,
    }
    ds = datasets.Dataset.from_dict(
        {"img": [str(p) for p in original.paths], "c0": [c[0] for c in original.captions],
         "c1": [c[1] for c in original.captions]}
    ).cast_column("img", datasets.Image())  # fmt: skip
    (tmp_path / "pq").mkdir()
    ds.to_parquet(str(tmp_path / "pq" / "train.parquet"))
    pattern = tool.main(["--dataset", "parquet", "--data_dir", str(tmp_path / "pq"),
                         "--image_column", "img", "--caption_columns", "c0", "c1",
                         "--output_dir", str(tmp_path / "s2"),
                         "--samples_per_shard", "4"])  # fmt: skip
    again = CaptionShards(pattern)
    assert again.captions == original.captions
    assert all(same_pixels(again.image(i), original.image(i)) for i in range(5))


def run_recipe(tmp_path, train: str, test: str, *extra: str) -> dict:
    return clip_recipe.main(
        ["--train_data", train, "--test_data", test, "--output_dir", str(tmp_path / "run"),
         "--max_steps", "2", "--batch_size", "4", "--show_images", "1", "--log_with", "",
         "--progress_bar", "false", *SMALL, *extra]
    )  # fmt: skip


def test_recipe_trains_on_a_csv(tmp_path):
    (tmp_path / "img").mkdir()
    with (tmp_path / "train.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "caption"])
        for i in range(10):
            picture(i, (32, 32)).save(tmp_path / f"img/{i}.png")
            writer.writerow([f"img/{i}.png", captions_of(i)[0]])
    summary = run_recipe(tmp_path, str(tmp_path / "train.csv"), str(tmp_path / "train.csv"),
                         "--image_column", "path")  # fmt: skip
    assert summary["steps"] == 2 and summary["train_images"] == 10
    assert summary["test_captions"] == 10
    recipe = clip_recipe
    older = recipe.DataArgs(train_jsonl="old.jsonl")
    assert recipe.data_path(older, "train") == "old.jsonl"
    with pytest.raises(ValueError, match="give --train_data or its older name --train_jsonl"):
        recipe.data_path(recipe.DataArgs(train_data="a.csv", train_jsonl="b.jsonl"), "train")
    with pytest.raises(ValueError, match="--shuffle_buffer must be at least 1, got 0"):
        recipe.DataArgs(shuffle_buffer=0)


def test_recipe_streams_shards_and_evaluates_on_indexed_shards(tmp_path):
    train = write_shards(tmp_path / "train", 16, per_shard=4)
    test = write_shards(tmp_path / "test", 6, per_shard=3)
    summary = run_recipe(tmp_path, train, test, "--num_workers", "1", "--shuffle_buffer", "3")
    assert summary["steps"] == 2 and summary["train_images"] == 16
    assert summary["test_images"] == 6 and summary["test_captions"] == 12
    assert summary["skipped"] == {"train": {}, "test": {}}
    with pytest.raises(ValueError, match="not on shards"):
        # the same output_dir again: told to replace the first run's work (issue 19's run folder)
        run_recipe(
            tmp_path, train, test, "--false_negative_threshold", "0.5", "--overwrite_output_dir"
        )
