"""Smoke test of the long G2P run (benchmarks/train_g2p.py): a tiny model, a few steps, every output written."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from course_lib.models import EncoderDecoder
from course_lib.pronunciation import G2PBatches, make_g2p_model, predict
from course_lib.training import compute_loss, load_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def _train_g2p():
    """benchmarks/train_g2p.py as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("train_g2p", ROOT / "benchmarks" / "train_g2p.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_train_g2p_smoke(tmp_path: Path, norm: str, one_thread) -> None:
    out, ck = tmp_path / "run", tmp_path / "ck"
    results = _train_g2p().main([
        "--max-steps", "20", "--minutes", "5", "--layers", "1", "--d-model", "32", "--heads", "2", "--warmup", "5",
        "--norm", norm, "--label-smoothing", "0.1" if norm == "post" else "0", "--beam-words", "4",
        "--decay", "linear" if norm == "post" else "cosine", "--final-lr", "0" if norm == "post" else "0.05",
        "--out", str(out), "--checkpoint", str(ck),
    ])
    assert results["steps"] == 20 and results["args"]["norm"] == norm
    assert results["args"]["decay"] == ("linear" if norm == "post" else "cosine")
    saved = json.loads((out / "results.json").read_text())
    assert saved["steps"] == 20 and len(saved["history"]["val_wer"]) == 10  # an evaluation every 2 steps
    for key in ("greedy_test", "beam_test"):
        assert 0.0 <= saved[key]["wer"] <= 1.0 and 0.0 <= saved[key]["per"]
    assert f"{norm}-LN" in (out / "log.txt").read_text()
    model = load_checkpoint(ck, EncoderDecoder)["model"]  # the saved config rebuilds the same model
    assert model.config.pre_norm == (norm == "pre") and model.config.n_encoder_layer == 1
    assert isinstance(predict(model.eval(), "cat"), list)


def test_train_g2p_rejects_a_bad_option(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        _train_g2p().main(["--norm", "middle", "--out", str(tmp_path)])
    with pytest.raises(SystemExit):
        _train_g2p().main(["--final-lr", "1.5", "--out", str(tmp_path)])


def test_smoothed_loss_matches_the_plain_loss_and_the_formula() -> None:
    module = _train_g2p()
    torch.manual_seed(0)
    model = make_g2p_model(1, 32, 2, 0.0)
    words = [("cat", ["K", "AE", "T"]), ("tomato", ["T", "AH", "M", "EY", "T", "OW"]), ("dog", ["D", "AO", "G"]),
             ("a", ["AH"])]
    batch = G2PBatches(words, 4, chunks=2)()  # two micro-batches of different lengths
    with torch.no_grad():
        assert torch.allclose(module.smoothed_loss(model, batch, 0.0), compute_loss(model, batch), atol=1e-6)
        # by hand: (1 - eps) * (-log p[label]) + eps * mean over the vocabulary of -log p, averaged over tokens
        nll, uniform, n = 0.0, 0.0, 0
        for b in batch:
            logp = torch.log_softmax(model(b["src"], b["tgt"], src_mask=b.get("src_mask")).logits, -1)
            keep = b["labels"] != -100
            nll += -logp[keep].gather(-1, b["labels"][keep][:, None]).sum()
            uniform += -logp[keep].mean(-1).sum()
            n += int(keep.sum())
        expected = (0.9 * nll + 0.1 * uniform) / n
        assert torch.allclose(module.smoothed_loss(model, batch, 0.1), expected, atol=1e-6)


def test_bench_llama_worker_smoke() -> None:
    """The course side of benchmarks/bench_llama.py in this process: load, a few greedy tokens, the measurements."""
    spec = importlib.util.spec_from_file_location("bench_llama", ROOT / "benchmarks" / "bench_llama.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    r = module.worker("course", 4)
    assert len(r["tokens"]) == 4 and r["load_s"] > 0 and r["tokens_per_s"] > 0 and r["prompt_tokens"] > 10


def _script(name: str):
    """benchmarks/<name>.py as a module."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_scaling_prediction_writes_the_prediction_then_the_measurement(tmp_path: Path, one_thread) -> None:
    grid = {"shapes": [[1, 16], [1, 32], [2, 32]], "token_budgets": [256, 512, 1024], "block_size": 8, "batch_size": 4,
            "eval_windows": 16}
    (tmp_path / "grid.json").write_text(json.dumps(grid))
    args = ["--config", str(tmp_path / "grid.json"), "--sweep", str(tmp_path / "sweep.json"),
            "--out", str(tmp_path / "prediction.json"), "--shape", "2", "48", "--tokens", "2048"]
    record = _script("scaling_prediction").main(args)
    saved = json.loads((tmp_path / "prediction.json").read_text())
    assert saved == json.loads(json.dumps(record))
    assert saved["target"]["params"] > max(r["params"] for r in json.loads((tmp_path / "sweep.json").read_text())["runs"])
    assert saved["relative_error"] == pytest.approx((saved["predicted_val_loss"] - saved["measured_val_loss"]) / saved["measured_val_loss"])
    assert len(saved["fit"]) == 7 and saved["settings"]["token_budgets"] == [256, 512, 1024]
    again = _script("scaling_prediction").main(args)  # the same prediction and target: read back, not trained again
    assert again == saved


def test_bench_scaling_reports_the_share_outside_forward_and_backward(tmp_path: Path, one_thread) -> None:
    report = _script("bench_scaling").main(["--steps", "3", "--shapes", "1x16", "--out", str(tmp_path / "b.json")])
    row = report["shapes"]["1x16"]
    assert sum(row["share"].values()) == pytest.approx(1.0)
    assert row["outside_forward_backward"] == pytest.approx(1 - row["share"]["forward"] - row["share"]["backward"])
    assert row["tokens_per_second"] > 0 and json.loads((tmp_path / "b.json").read_text())["steps"] == 3
