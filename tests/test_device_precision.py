"""Precision choices that depend on the CPU (mvgen/device.py): bf16 only where the CPU multiplies it natively."""

import pytest

from mvgen.device import cpu_has_fast_bf16, training_precision


def test_cpu_probe_answers_a_bool():
    assert isinstance(cpu_has_fast_bf16(), bool)


@pytest.mark.parametrize("fast", [True, False])
def test_training_precision_on_the_cpu(monkeypatch, fast):
    monkeypatch.setattr("mvgen.device.cpu_has_fast_bf16", lambda: fast)
    precision, note = training_precision("bf16", "cpu")
    if fast:
        assert (precision, note) == ("bf16", None)
    else:
        assert precision == "no" and "no native bf16" in note and "fp32" in note
    assert training_precision("no", "cpu") == ("no", None)  # fp32 asked: fp32, whatever the CPU
    assert training_precision("bf16", "cuda") == ("bf16", None)  # a GPU's precision is its own matter

