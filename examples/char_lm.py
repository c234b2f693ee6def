"""Make up new first names with a character-level language model ("makemore" style).

    python examples/char_lm.py --model all --samples 10        # the three models, full data
    python examples/char_lm.py --model mlp --limit 500 --steps 200   # a quick look

The names are the US census first-name lists of the PyPI package ``names`` (``pip install
names``), split 80/10/10 into train/validation/test with ``--seed``. Each model (an MLP on the
last 3 characters, an LSTM, a small causal transformer; ``tinydl.layers.CharMLP`` ...) trains with
AdamW on the cross-entropy of the next character; losses are in nats per character, and every
model predicts the same characters, so they compare.
"""

import argparse

from tinydl.data import load_names
from tinydl.layers import CHAR_MODELS
from tinydl.recipes import charlm


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=[*CHAR_MODELS, "all"], default="all")
    parser.add_argument("--steps", type=int, help="optimizer steps (default: per model, RECIPES)")
    parser.add_argument("--limit", type=int, help="use a random N of the names only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=int, default=10, help="new names to draw per model")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--log-every", type=int, default=0, help="print losses every N steps")
    args = parser.parse_args()
    if args.limit is not None and args.limit < 10:
        parser.error(f"--limit must be at least 10 (10% of it is validation), got {args.limit}")

    words = load_names()
    if args.limit:
        words = charlm.split_words(words, args.seed, (1.0, 0.0, 0.0))[0][: args.limit]
    train, val, test = charlm.split_words(words, args.seed)
    seq_len = max(map(len, words)) + 1
    print(f"{len(words)} names (longest {seq_len - 1} letters): "
          f"{len(train)} train, {len(val)} validation, {len(test)} test")  # fmt: skip

    kinds = list(CHAR_MODELS) if args.model == "all" else [args.model]
    for kind in kinds:
        model, r = charlm.fit(kind, train, val, steps=args.steps, seed=args.seed,
                              seq_len=seq_len, log_every=args.log_every)  # fmt: skip
        test_loss = charlm.evaluate(model, *charlm.model_data(model, test, seq_len))
        print(f"{kind}: train loss {r['train_loss']:.4f} | val loss {r['val_loss']:.4f} | "
              f"test loss {test_loss:.4f} nats/char ({r['parameters']} parameters, "
              f"{r['steps']} steps, {r['seconds']:.1f} s)")  # fmt: skip
        names = charlm.sample(model, args.samples, seed=args.seed, temperature=args.temperature)
        print(f"{kind} samples: {', '.join(names)}")


if __name__ == "__main__":
    main()
