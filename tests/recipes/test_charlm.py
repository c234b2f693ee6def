"""The character-level language model recipe: data layout, loss in nats/char, training, sampling;
and the first-name lists it reads."""

import importlib.util
import math

import numpy as np
import pytest

import tinydl as td
from tinydl.data import DatasetNotFoundError, load_names
from tinydl.layers import CharMLP, CharTransformer
from tinydl.recipes import charlm

WORDS = ["emma", "olivia", "ava", "isabella", "sophia", "mia", "amelia", "ella", "ada", "lia"]


def test_context_windows_of_one_word():
    x, y = charlm.context_windows(["emma"], block_size=3)
    assert x.tolist() == [[0, 0, 0], [0, 0, 5], [0, 5, 13], [5, 13, 13], [13, 13, 1]]
    assert y.tolist() == [5, 13, 13, 1, 0]  # e m m a .


def test_padded_sequences_ignore_past_the_end():
    x, y = charlm.padded_sequences(["ab", "c"])
    assert x.tolist() == [[0, 1, 2], [0, 3, 0]]
    assert y.tolist() == [[1, 2, 0], [3, 0, charlm.IGNORE]]
    with pytest.raises(ValueError, match="length 2 < longest word \\+ 1 = 3"):
        charlm.padded_sequences(["ab"], length=2)


def test_encode_refuses_other_characters():
    assert charlm.decode(charlm.encode("zoe")) == "zoe"
    with pytest.raises(ValueError, match="'zoë' holds 'ë'"):
        charlm.encode("zoë")


def test_split_is_seeded_disjoint_and_complete():
    words = [f"w{i}" for i in range(100)]
    train, val, test = charlm.split_words(words, seed=3)
    assert (len(train), len(val), len(test)) == (80, 10, 10)
    assert sorted(train + val + test) == sorted(words)
    assert charlm.split_words(words, seed=3) == (train, val, test)
    assert charlm.split_words(words, seed=4)[0] != train
    with pytest.raises(ValueError, match="fractions"):
        charlm.split_words(words, fractions=(0.5, 0.5))


def _uniform(model):
    for p in model.out.parameters():
        p.data[...] = 0
    return model


@pytest.mark.parametrize("kind", ["mlp", "lstm", "transformer"])
def test_a_uniform_model_scores_log_27_nats_per_char(kind):
    td.manual_seed(0)
    model = _uniform(charlm.build_model(kind, seq_len=9))
    x, y = charlm.model_data(model, WORDS, 9)
    assert charlm.evaluate(model, x, y) == pytest.approx(math.log(27), rel=1e-6)


def test_evaluate_averages_over_characters_not_batches():
    td.manual_seed(0)
    model = charlm.build_model("transformer", seq_len=9, n_embd=16, n_head=2, n_layer=1)
    x, y = charlm.model_data(model, WORDS, 9)  # words of 3 to 8 letters
    whole = charlm.evaluate(model, x, y)
    assert charlm.evaluate(model, x, y, batch_size=1) == pytest.approx(whole, rel=1e-5)
    per_word = [charlm.evaluate(model, x[i : i + 1], y[i : i + 1]) for i in range(len(x))]
    assert not np.isclose(np.mean(per_word), whole, rtol=1e-4)


SMALL = {
    "mlp": {},
    "lstm": {"sizes": {"n_embd": 16, "hidden_size": 64, "dropout": 0.0}, "lr": 2e-2},
    "transformer": {"sizes": {"n_embd": 32, "n_head": 2, "n_layer": 1, "dropout": 0.0}, "lr": 1e-2},
}


@pytest.mark.parametrize("kind", ["mlp", "lstm", "transformer"])
def test_fit_learns_the_words(kind):
    steps = 150 if kind == "mlp" else 60
    model, r = charlm.fit(kind, WORDS, WORDS[:3], steps=steps, seed=0, **SMALL[kind])
    assert r["train_loss"] < 1.2 < math.log(27)  # memorised, far below the uniform 3.30
    assert r["parameters"] == sum(p.data.size for p in model.parameters())
    assert r["steps"] == steps and r["history"] == []


def test_sampling_is_seeded_and_respects_the_block():
    td.manual_seed(0)
    model = CharTransformer(27, block_size=5, n_embd=16, n_head=2, n_layer=1)
    a = charlm.sample(model, 20, seed=1)
    assert a == charlm.sample(model, 20, seed=1) and a != charlm.sample(model, 20, seed=2)
    assert all(set(w) <= set(charlm.VOCAB[1:]) and len(w) <= 5 for w in a)
    mlp = CharMLP(27)
    assert len(charlm.sample(mlp, 7, seed=0, max_len=4)) == 7
    with pytest.raises(ValueError, match="temperature must be > 0"):
        charlm.sample(mlp, 1, temperature=0)


def test_a_cold_sample_is_the_likeliest_name():
    model, _ = charlm.fit("mlp", ["bob"] * 5, ["bob"], steps=200, seed=0)
    assert charlm.sample(model, 3, seed=0, temperature=0.05) == ["bob"] * 3


def test_load_names():
    pytest.importorskip("names", reason="the first-name lists are in the PyPI package 'names'")
    words = load_names()
    assert len(words) > 5000 and words == sorted(set(words))
    assert all(w.isalpha() and w.islower() and w.isascii() for w in words)
    assert {"emma", "james", "mary"} <= set(words)


def test_load_names_says_what_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "names" else real(n, *a)
    )
    with pytest.raises(DatasetNotFoundError, match="pip install names"):
        load_names()
