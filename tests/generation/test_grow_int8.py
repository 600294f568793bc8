"""Training a deeper model from a shallower pipeline (``init_from`` grows it) and the 8-bit export
(`mvgen export-model --dtype int8`) that lets the deeper model ship small."""

from pathlib import Path

import pytest
import torch

from mvgen.cli import main
from mvgen.models import PTDiTTransformer3DModel
from mvgen.models.int8 import GROUP, dequantize, int8_file, quantize, save_int8
from mvgen.train import _init_from, train
from tests.generation.test_train import _cfg, tiny_data, tiny_vae  # noqa: F401  (module fixtures)


def test_quantize_is_within_half_a_step_and_handles_zero_groups():
    torch.manual_seed(0)
    w = torch.randn(6, 3 * GROUP) * torch.tensor([1e-3, 1, 10, 0, 1, 5])[:, None]
    q, scale = quantize(w)
    assert q.dtype == torch.int8 and q.shape == w.shape and scale.shape == (6, 3) and scale.dtype == torch.float32
    back = dequantize(q, scale)
    step = scale.float().repeat_interleave(GROUP, 1)
    assert (back - w).abs().le(step / 2 * 1.001 + 1e-12).all()
    assert not back[3].any()  # an all-zero row stays zero
    assert q.abs().amax() == 127


def test_int8_folder_loads_as_the_dequantized_model_and_bf16_folders_still_load(tmp_path):
    torch.manual_seed(0)
    model = PTDiTTransformer3DModel.from_preset("tiny", num_layers=1, num_attention_heads=2, attention_head_dim=32,
                                                in_channels=4, sample_size=8)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(std=0.05)
    save_int8(model, tmp_path / "q")
    assert int8_file(tmp_path / "q") is not None
    loaded = PTDiTTransformer3DModel.from_pretrained(tmp_path / "q", dtype=torch.float32)
    a, b = model.state_dict(), loaded.state_dict()
    qkv = "transformer_blocks.0.attn_window.to_qkv.weight"
    torch.testing.assert_close(b[qkv], dequantize(*quantize(a[qkv])))
    assert not torch.equal(b[qkv], a[qkv])  # really rounded
    bias = "transformer_blocks.0.attn_window.to_qkv.bias"
    assert torch.equal(b[bias], a[bias].to(torch.bfloat16).float())
    assert (tmp_path / "q" / "diffusion_pytorch_model.safetensors").stat().st_size < 0.6 * 2 * sum(
        p.numel() for p in model.parameters())  # about half of bfloat16's bytes
    model.save_pretrained(tmp_path / "plain")
    assert int8_file(tmp_path / "plain") is None
    plain = PTDiTTransformer3DModel.from_pretrained(tmp_path / "plain")
    assert torch.equal(plain.state_dict()[qkv], a[qkv])


def test_a_deeper_run_grows_from_a_shallower_pipeline_and_exports_in_8_bits(tiny_data, tiny_vae, tmp_path, capsys):
    from mvgen.pipeline import PTDiTMultiViewPipeline

    first = _cfg(tiny_data, tiny_vae, tmp_path / "shallow", steps=1)
    first.model = {**first.model, "attention_head_dim": 32}  # 64 wide: every linear's inputs fill 8-bit groups
    shallow = train(first)
    cfg = _cfg(tiny_data, tiny_vae, tmp_path / "deep", steps=1)
    cfg.model = {**first.model, "num_layers": 3}
    cfg.init_from = str(shallow)
    deep = train(cfg)
    assert "from 1 to 3 blocks" in capsys.readouterr().out
    grown = PTDiTTransformer3DModel.from_pretrained(deep / "transformer")
    assert grown.config.num_layers == 3
    with pytest.raises(ValueError, match="only grows deeper"):
        _init_from(PTDiTTransformer3DModel.from_preset("tiny", num_layers=1, num_attention_heads=2,
                                                       attention_head_dim=32, in_channels=4, sample_size=4), deep)

    assert main(["export-model", str(deep), str(tmp_path / "q"), "--dtype", "int8"]) == 0
    assert main(["export-model", str(deep), str(tmp_path / "b")]) == 0
    size = {k: (tmp_path / k / "transformer" / "diffusion_pytorch_model.safetensors").stat().st_size for k in "qb"}
    assert size["q"] < 0.75 * size["b"]
    pipe = PTDiTMultiViewPipeline.from_pretrained(tmp_path / "q")
    for name, value in pipe.transformer.state_dict().items():
        if name.endswith("to_qkv.weight"):
            ref = grown.state_dict()[name]
            assert (value - ref).abs().max() <= ref.abs().max() / 127 / 2 * 1.01, name


def test_the_shipped_model_files_fit_in_50_mb():
    from mvgen.generate import DEFAULT_MODEL

    files = [p for p in Path(DEFAULT_MODEL).rglob("*") if p.is_file()]
    assert any(p.suffix == ".safetensors" for p in files)
    assert sum(p.stat().st_size for p in files) <= 50_000_000
