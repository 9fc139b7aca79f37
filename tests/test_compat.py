"""The private internals lightft relies on (``lightft.compat``) exist in the installed releases."""

import pytest


def test_every_private_internal_is_still_there():
    from lightft.compat import missing_internals

    assert missing_internals() == [], "a torch/transformers/accelerate release changed an internal lightft uses"


def test_a_second_accelerator_with_another_precision_after_a_fresh_state():
    from accelerate import Accelerator

    from lightft.compat import fresh_accelerator_state

    fresh_accelerator_state()
    assert Accelerator(cpu=True, mixed_precision="bf16").mixed_precision == "bf16"
    with pytest.raises(ValueError):  # what Accelerate does without the reset: the fence is still needed
        Accelerator(cpu=True, mixed_precision="no")
    fresh_accelerator_state()
    assert Accelerator(cpu=True, mixed_precision="no").mixed_precision == "no"


def test_attention_switch_reads_and_checks_the_kernel(tiny_bert):
    from lightft.compat import attention_kernel, can_switch_attention
    from lightft.model import load_classifier

    model, _ = load_classifier(str(tiny_bert), ["a", "b"])
    assert attention_kernel(model) in ("sdpa", "eager")
    assert can_switch_attention(model)
    assert attention_kernel(object()) is None and not can_switch_attention(object())
