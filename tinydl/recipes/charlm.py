"""A character-level language model of first names, in the spirit of Karpathy's "makemore".

The vocabulary is ``'.'`` (id 0, both the start and the end of a word) and the letters a-z
(ids 1-26). A word ``emma`` is the 5 predictions ``. -> e, e -> m, m -> m, m -> a, a -> .``;
every model is scored on exactly those, so losses in nats per character compare across models:

- the MLP (``CharMLP``) sees the last ``block_size`` characters, ``'.'``-padded at the start
  (:func:`context_windows`);
- the LSTM and the transformer read the whole word at once (:func:`padded_sequences`): input
  ``.emma``, target ``emma.``, and past a word's end the target is ``IGNORE`` so that
  ``F.cross_entropy`` skips it (causal models: the padding never reaches earlier positions).
"""

from __future__ import annotations

import math
import time

import numpy as np

from .. import functional as F
from ..autograd import Tensor, no_grad
from ..layers import CHAR_MODELS, CharMLP
from ..optim import AdamW
from ..optim.lr_scheduler import CosineAnnealingLR
from ..tensor import manual_seed

__all__ = [
    "VOCAB", "STOI", "IGNORE", "split_words", "encode", "decode", "context_windows",
    "padded_sequences", "build_model", "model_data", "train", "evaluate", "sample", "RECIPES",
    "fit",
]  # fmt: skip

VOCAB = "." + "abcdefghijklmnopqrstuvwxyz"
STOI = {c: i for i, c in enumerate(VOCAB)}
IGNORE = -100  # F.cross_entropy's default ignore_index


def split_words(words, seed: int = 0, fractions=(0.8, 0.1, 0.1)) -> tuple[list, list, list]:
    """Shuffle ``words`` with ``seed`` and cut them into train, validation and test lists."""
    if len(fractions) != 3 or not math.isclose(sum(fractions), 1.0):
        raise ValueError(f"split_words: fractions must be 3 numbers summing to 1, got {fractions}")
    order = np.random.default_rng(seed).permutation(len(words))
    shuffled = [words[i] for i in order]
    n1 = int(round(fractions[0] * len(words)))
    n2 = n1 + int(round(fractions[1] * len(words)))
    return shuffled[:n1], shuffled[n1:n2], shuffled[n2:]


def encode(word: str) -> list[int]:
    """``'emma'`` -> ``[5, 13, 13, 1]``; a character outside a-z raises ValueError."""
    try:
        return [STOI[c] for c in word]
    except KeyError as exc:
        raise ValueError(f"encode: {word!r} holds {exc.args[0]!r}, not one of a-z") from None


def decode(ids) -> str:
    return "".join(VOCAB[int(i)] for i in ids)


def context_windows(words, block_size: int) -> tuple[np.ndarray, np.ndarray]:
    """For the MLP: ``X`` (n, block_size) the preceding characters, ``Y`` (n,) the next one,
    one row per character of every word and one for its end."""
    xs, ys = [], []
    for word in words:
        context = [0] * block_size
        for ix in [*encode(word), 0]:
            xs.append(context)
            ys.append(ix)
            context = context[1:] + [ix]
    x = np.array(xs, dtype=np.int64).reshape(-1, block_size)
    return x, np.array(ys, dtype=np.int64)


def padded_sequences(words, length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """For the sequence models: ``X``, ``Y`` (n_words, length), length defaulting to the
    longest word + 1. ``X`` is ``'.'`` then the word, ``'.'``-padded; ``Y`` is the word then
    ``'.'``, padded with ``IGNORE``."""
    need = max(map(len, words), default=0) + 1
    length = need if length is None else length
    if length < need:
        raise ValueError(f"padded_sequences: length {length} < longest word + 1 = {need}")
    x = np.zeros((len(words), length), dtype=np.int64)
    y = np.full((len(words), length), IGNORE, dtype=np.int64)
    for row, word in enumerate(words):
        ids = encode(word)
        x[row, 1 : len(ids) + 1] = ids
        y[row, : len(ids) + 1] = [*ids, 0]
    return x, y


def build_model(kind: str, seq_len: int, **sizes):
    """``CHAR_MODELS[kind]`` for this vocabulary; ``seq_len`` (longest word + 1) sizes the
    transformer's positions; ``sizes`` go to the model (``n_embd``, ``n_hidden``, ...)."""
    if kind not in CHAR_MODELS:
        raise ValueError(f"build_model: kind must be one of {sorted(CHAR_MODELS)}, got {kind!r}")
    if kind == "transformer":
        sizes.setdefault("block_size", seq_len)
    return CHAR_MODELS[kind](len(VOCAB), **sizes)


def model_data(model, words, seq_len: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The (X, Y) arrays that ``model`` trains on: windows for an MLP, sequences otherwise."""
    if isinstance(model, CharMLP):
        return context_windows(words, model.block_size)
    return padded_sequences(words, seq_len)


def _loss(model, x: np.ndarray, y: np.ndarray, reduction: str = "mean") -> Tensor:
    logits = model(Tensor.from_array(x))
    logits = logits.reshape(-1, logits.shape[-1])
    return F.cross_entropy(logits, Tensor.from_array(y.reshape(-1)), reduction=reduction)


def evaluate(model, x: np.ndarray, y: np.ndarray, batch_size: int = 512) -> float:
    """Mean loss in nats per predicted character (``IGNORE`` targets left out), in eval mode."""
    model.eval()
    total, count = 0.0, int((y != IGNORE).sum())
    with no_grad():
        for i in range(0, len(x), batch_size):
            total += float(_loss(model, x[i : i + batch_size], y[i : i + batch_size], "sum").item())
    return total / max(count, 1)


def train(model, x, y, *, steps: int, batch_size: int = 32, lr: float = 1e-2, weight_decay=0.01,
          seed: int = 0, val=None, log_every: int = 0, log=print) -> list[dict]:  # fmt: skip
    """``steps`` AdamW steps on random minibatches of (x, y), the learning rate annealed from
    ``lr`` to ``lr / 10`` on a cosine. With ``log_every``: every that many steps (and at the
    end) logs and records the train loss of the last batch and, given ``val=(xv, yv)``, the
    validation loss. Returns those records."""
    manual_seed(seed)  # the initial weights are drawn before; this seeds dropout
    rng = np.random.default_rng(seed)
    opt = AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = CosineAnnealingLR(opt, T_max=max(steps, 1), eta_min=lr / 10)
    history, start = [], time.perf_counter()
    for step in range(1, steps + 1):
        model.train()
        idx = rng.integers(0, len(x), batch_size)
        loss = _loss(model, x[idx], y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if log_every and (step % log_every == 0 or step == steps):
            record = {"step": step, "train_loss": float(loss.item())}
            if val is not None:
                record["val_loss"] = evaluate(model, *val)
            record["seconds"] = time.perf_counter() - start
            history.append(record)
            log(" ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                         for k, v in record.items()))  # fmt: skip
    return history


def _next_logits(model, rows: np.ndarray) -> np.ndarray:
    """(n, vocab) logits of the character after each row of ids."""
    out = model(Tensor.from_array(rows)).numpy().astype(np.float64)
    return out if out.ndim == 2 else out[:, -1]


def sample(model, n: int, *, seed: int = 0, temperature: float = 1.0, max_len: int = 20):
    """``n`` new words drawn one character at a time from ``softmax(logits / temperature)``
    with ``np.random.default_rng(seed)``, each ended by ``'.'`` or by ``max_len`` characters
    (at most the transformer's ``block_size``, its number of positions)."""
    if temperature <= 0:
        raise ValueError(f"sample: temperature must be > 0, got {temperature}")
    rng = np.random.default_rng(seed)
    window = getattr(model, "block_size", None)
    is_mlp = isinstance(model, CharMLP)
    if window is not None and not is_mlp:  # the transformer: its last input fills its positions
        max_len = min(max_len, window)
    model.eval()
    seqs = np.zeros((n, window if is_mlp else 1), dtype=np.int64)
    done = np.zeros(n, dtype=bool)
    with no_grad():
        for _ in range(max_len):
            rows = seqs[:, -window:] if is_mlp else seqs
            z = _next_logits(model, rows) / temperature
            p = np.exp(z - z.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            nxt = np.array([rng.choice(len(VOCAB), p=row) for row in p])
            nxt[done] = 0
            seqs = np.concatenate([seqs, nxt[:, None]], axis=1)
            done |= nxt == 0
            if done.all():
                break
    start = window if is_mlp else 1
    return [decode(row[start:]).split(".")[0] for row in seqs]


# NOTE: sized by validation loss on all the names (benchmarks/RESULTS.md): with 4,130 training
# names, more steps overfit the LSTM and the transformer and no longer help the MLP (100,000
# steps: 2.0016 nats/char vs 1.9930); each trains in 1-3 minutes on one core. The MLP's batch
# counts characters, the others' count words (about 7 characters each).
RECIPES = {
    "mlp": {"sizes": {"block_size": 3, "n_embd": 10, "n_hidden": 200},
            "steps": 30000, "batch_size": 64, "lr": 1e-2, "weight_decay": 0.01},
    "lstm": {"sizes": {"n_embd": 32, "hidden_size": 128, "dropout": 0.3},
             "steps": 3000, "batch_size": 32, "lr": 3e-3, "weight_decay": 0.01},
    "transformer": {"sizes": {"n_embd": 64, "n_head": 4, "n_layer": 2, "dropout": 0.2},
                    "steps": 3000, "batch_size": 32, "lr": 3e-3, "weight_decay": 0.01},
}  # fmt: skip


def fit(kind: str, train_words, val_words, *, steps: int | None = None, seed: int = 0,
        seq_len: int | None = None, log_every: int = 0, log=print, **overrides):  # fmt: skip
    """Build ``kind`` with its ``RECIPES`` entry (``overrides`` replace its keys), train it on
    ``train_words`` and measure it; returns ``(model, record)`` with the losses in nats/char,
    the parameter count and the training seconds. ``seq_len`` (default: the longest of these
    words + 1) bounds the words the transformer can score later."""
    recipe = {**RECIPES[kind], **overrides}
    seq_len = seq_len or max(map(len, [*train_words, *val_words])) + 1
    manual_seed(seed)
    model = build_model(kind, seq_len, **recipe["sizes"])
    train_xy, val_xy = model_data(model, train_words, seq_len), model_data(model, val_words)
    start = time.perf_counter()
    history = train(model, *train_xy, steps=steps or recipe["steps"], seed=seed,
                    batch_size=recipe["batch_size"], lr=recipe["lr"],
                    weight_decay=recipe["weight_decay"], val=val_xy, log_every=log_every,
                    log=log)  # fmt: skip
    seconds = time.perf_counter() - start
    record = {
        "model": kind,
        "parameters": sum(int(p.data.size) for p in model.parameters()),
        "steps": steps or recipe["steps"],
        "seconds": seconds,
        "train_loss": evaluate(model, *train_xy),
        "val_loss": evaluate(model, *val_xy),
        "history": history,
    }
    return model, record
