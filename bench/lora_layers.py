"""LoRA in every layer vs only the top layers (`peft.layers_to_transform`), without LoRA dropout
(`peft.lora_dropout=0`), and on every linear layer (`peft.target_modules=all-linear`) or subsets of it: one
training step's wall time.

With no trainable weight below a layer, autograd stops there, so the backward pass gets shorter. Times the
PEFT model alone (forward, backward, AdamW step) on 16 random-token texts at 512 tokens, the variants
alternated over rounds; prints the best step per variant and its ratio to LoRA in every layer.
`--bf16` runs the steps under bf16 autocast with lightft's adapter setting (`speed.adapter_input_casts_off`)
and adds two variants of the default: PEFT's fp32 input casts kept (lightft before 4a7e3fe) and the model's
hidden dropout at 0.

    .venv/bin/python bench/lora_layers.py [--rounds 2] [--bf16]
"""

from __future__ import annotations

import argparse
import time

# name: extra LoraConfig fields (the default config's LoRA otherwise: r 8, alpha 16, dropout 0.1, query/value)
VARIANTS: dict[str, dict] = {
    "every layer": {},
    "layers 2-5": {"layers_to_transform": [2, 3, 4, 5]},
    "layers 3-5": {"layers_to_transform": [3, 4, 5]},
    "every layer, LoRA dropout 0": {"lora_dropout": 0.0},
    "every layer, all-linear": {"target_modules": "all-linear"},
    "every layer, all-linear, LoRA dropout 0": {"target_modules": "all-linear", "lora_dropout": 0.0},
    # Subsets of all-linear: the feed-forward output layer reads the 1,536-wide activations, the costly part.
    "every layer, attention (q, k, v, o), LoRA dropout 0": {
        "target_modules": ["query", "key", "value", "attention.output.dense"], "lora_dropout": 0.0},
    "every layer, attention + feed-forward in, LoRA dropout 0": {
        "target_modules": ["query", "key", "value", "attention.output.dense", "intermediate.dense"],
        "lora_dropout": 0.0},
}
DEFAULT = {"target_modules": "all-linear", "lora_dropout": 0.0}
# --bf16 only: "_casts" keeps PEFT's fp32 round trip of each adapter's input, "_model" goes to the model config.
BF16_VARIANTS: dict[str, dict] = {
    "every layer, all-linear, LoRA dropout 0, fp32 input casts": {**DEFAULT, "_casts": True},
    "every layer, all-linear, LoRA dropout 0, hidden dropout 0": {**DEFAULT, "_model": {"hidden_dropout_prob": 0.0}},
}


def step_seconds(extra: dict, steps: int = 4, precision: str = "fp32") -> float:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    from lightft.model import resolve_model_path
    from lightft.runtime import autocast
    from lightft.speed import adapter_input_casts_off

    extra = dict(extra)
    casts, model_kwargs = extra.pop("_casts", False), extra.pop("_model", {})
    torch.manual_seed(0)
    base = AutoModelForSequenceClassification.from_pretrained(
        resolve_model_path("sentence-transformers/all-MiniLM-L6-v2"), num_labels=5, attention_probs_dropout_prob=0.0,
        **model_kwargs)
    model = get_peft_model(base, LoraConfig(task_type="SEQ_CLS", **{"r": 8, "lora_alpha": 16, "lora_dropout": 0.1,
                                                                   **extra}))
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    x, y = torch.randint(1000, 20000, (16, 512)), torch.randint(0, 5, (16,))
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        with autocast(x.device, precision), adapter_input_casts_off(model, "fp32" if casts else precision):
            loss = model(input_ids=x, labels=y).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - start)
    return min(times[1:])  # the first step warms up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast, as lightft trains where the CPU has it")
    args = parser.parse_args()
    variants = {**VARIANTS, **BF16_VARIANTS} if args.bf16 else VARIANTS
    best: dict[str, float] = {}
    for _ in range(args.rounds):
        for name, extra in variants.items():
            best[name] = min(best.get(name, float("inf")),
                             step_seconds(extra, precision="bf16" if args.bf16 else "fp32"))
    for name, seconds in best.items():
        print(f"{name}: {seconds:.2f} s/step, {seconds / best['every layer']:.2f}x")


if __name__ == "__main__":
    main()
