"""Exports that load where lightft is not installed.

``export_merged``: the adapter folded into the base weights, saved as a plain transformers checkpoint
(safetensors, tokenizer, id2label) that ``transformers.pipeline("text-classification", model=OUT)`` loads.
"""

from __future__ import annotations

from pathlib import Path

from lightft import rundir
from lightft.errors import LightftError


def export_merged(run_dir: str | Path, out: str | Path) -> Path:
    """Write the run's fine-tuned model, adapter merged, to ``out``; returns ``out``."""
    import shutil
    import tempfile

    from transformers import AutoTokenizer

    from lightft.model import is_peft_model, load_saved_model, merged_for_inference

    run_dir, out = Path(run_dir), Path(out)
    rundir.require_complete(run_dir)
    if out.exists() and any(out.iterdir()):
        raise LightftError(f"{out} exists and is not empty; choose a new folder")
    from lightft.config import load_run_config

    cfg = load_run_config(run_dir)
    model = load_saved_model(run_dir / "adapter", cfg.model.name, cfg.model.trust_remote_code, cfg.model.allow_pickle)
    merged = merged_for_inference(model)
    if is_peft_model(merged):
        raise LightftError(f"method '{cfg.method}' cannot be merged into the base weights; export the adapter as is")
    tokenizer = AutoTokenizer.from_pretrained(run_dir / "adapter")
    # Write beside the target and rename, so a crash never leaves a half-written model under its name.
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        merged.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
