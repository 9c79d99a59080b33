import random

import numpy as np
import pytest
import torch

from course_lib.utils import VALID_DEVICES, CallCount, count_calls, get_device, set_seed, timer


def test_set_seed_makes_python_numpy_and_torch_repeat():
    set_seed(123)
    first = (random.random(), np.random.rand(), torch.rand(3))
    set_seed(123)
    second = (random.random(), np.random.rand(), torch.rand(3))
    assert first[0] == second[0] and first[1] == second[1]
    assert torch.equal(first[2], second[2])


def test_set_seed_different_seeds_differ():
    set_seed(1)
    a = torch.rand(5)
    set_seed(2)
    assert not torch.equal(a, torch.rand(5))


@pytest.mark.parametrize("bad", [1.5, "3", None, True])
def test_set_seed_rejects_non_int(bad):
    with pytest.raises(TypeError, match="seed must be an int"):
        set_seed(bad)


def test_set_seed_rejects_negative():
    with pytest.raises(ValueError, match=">= 0"):
        set_seed(-1)


def test_get_device_cpu_and_auto(monkeypatch):
    monkeypatch.delenv("COURSE_DEVICE", raising=False)
    assert get_device("cpu") == torch.device("cpu")
    auto = get_device()
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert auto.type == expected


def test_get_device_env_override(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "CPU")
    assert get_device() == torch.device("cpu")


def test_get_device_invalid_name_lists_valid_ones(monkeypatch):
    with pytest.raises(ValueError) as err:
        get_device("tpu")
    for name in VALID_DEVICES:
        assert name in str(err.value)
    monkeypatch.setenv("COURSE_DEVICE", "gpu0")
    with pytest.raises(ValueError, match="COURSE_DEVICE"):
        get_device()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_get_device_missing_cuda_is_an_error():
    with pytest.raises(ValueError, match="no CUDA GPU"):
        get_device("cuda")


def test_timer_measures(capsys):
    with timer("block") as t:
        sum(range(1000))
    assert t["seconds"] >= 0
    assert "block:" in capsys.readouterr().out


def test_close_progress_prints_the_final_line_of_a_notebook_bar(capsys):
    """A notebook bar is a widget whose stored text says 0%: close_progress prints its final state as text."""
    from tqdm import tqdm as text_tqdm
    from tqdm.notebook import tqdm as notebook_tqdm

    from course_lib.utils import close_progress

    bar = notebook_tqdm(total=3, desc="train")
    for _ in range(3):
        bar.update(1)
    capsys.readouterr()
    close_progress(bar)
    out = capsys.readouterr().out
    assert "train: 100%" in out and "3/3" in out
    plain = text_tqdm(total=2, desc="plain", file=__import__("io").StringIO())
    plain.update(2)
    close_progress(plain)  # already text in a terminal: nothing printed
    close_progress(None)
    assert capsys.readouterr().out == ""
    silent = notebook_tqdm(total=2, disable=True)
    close_progress(silent)
    assert capsys.readouterr().out == ""


def test_count_calls_counts_modules_and_kernels():
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU())
    x = torch.ones(2, 3)
    c = count_calls(lambda: net(x))
    assert c.module_calls == 3  # the Sequential and its two layers
    assert c.torch_ops >= 2  # at least the matrix product and the ReLU
    assert count_calls(lambda: net(x)) == c  # the same call counts the same
    assert count_calls(lambda: torch.relu(x)) == CallCount(0, 1)
    assert count_calls(lambda: None) == CallCount(0, 0)


def test_count_calls_removes_its_hook_even_when_fn_raises():
    from torch.nn.modules import module as torch_module

    before = len(torch_module._global_forward_pre_hooks)

    def boom():
        raise RuntimeError("inside")

    with pytest.raises(RuntimeError, match="inside"):
        count_calls(boom)
    assert len(torch_module._global_forward_pre_hooks) == before


def test_count_calls_rejects_a_non_callable():
    with pytest.raises(TypeError, match="callable"):
        count_calls(3)


def test_check_token_ids_is_the_one_clear_check():
    from course_lib.utils import check_token_ids

    ids = torch.tensor([[0, 4, 2]])
    assert check_token_ids(ids, "idx", vocab_size=5, dims=2) is ids
    with pytest.raises(TypeError, match=r"idx must be a torch.Tensor of token ids, got list"):
        check_token_ids([[1, 2]], "idx")
    with pytest.raises(TypeError, match=r"idx must hold integer token ids .* got dtype torch.float32"):
        check_token_ids(torch.zeros(1, 2), "idx")
    with pytest.raises(TypeError, match="got dtype torch.bool"):
        check_token_ids(torch.ones(1, 2, dtype=torch.bool), "idx")
    with pytest.raises(ValueError, match=r"idx must have shape \(B, T\), got \(3,\)"):
        check_token_ids(torch.zeros(3, dtype=torch.long), "idx", dims=2)
    with pytest.raises(ValueError, match=r"idx must lie in \[0, vocab_size=4\), got min 0, max 4"):
        check_token_ids(ids, "idx", vocab_size=4)
    with pytest.raises(ValueError, match=r"got min -1, max 2"):
        check_token_ids(torch.tensor([-1, 2]), "idx", vocab_size=4)
    assert check_token_ids(torch.empty(0, dtype=torch.long), vocab_size=1).numel() == 0
    assert check_token_ids(torch.empty(2, 3, dtype=torch.long, device="meta"), vocab_size=1).shape == (2, 3)


def test_every_module_checks_token_ids_with_the_one_function():
    """embeddings, models, masking and generation all name the same check (issue 23: one token-id validator)."""
    import inspect

    from course_lib import embeddings, generation, masking, models

    for module in (embeddings, generation, masking, models):
        assert "check_token_ids(" in inspect.getsource(module), module.__name__
