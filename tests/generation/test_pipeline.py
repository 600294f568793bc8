import json

import numpy as np
import pytest
import torch

from mvgen.cameras import orbit
from mvgen.pipeline import PTDiTMultiViewPipeline


def _run(pipe, **kw):
    kw.setdefault("num_views", 2)
    kw.setdefault("num_inference_steps", 2)
    kw.setdefault("generator", torch.Generator().manual_seed(0))
    kw.setdefault("output_type", "np")
    return pipe("a red mug", **kw)


def test_shapes_range_and_cameras(tiny_pipeline):
    out = _run(tiny_pipeline)
    assert out.images.shape == (1, 2, 16, 16, 3)
    assert out.images.min() >= 0 and out.images.max() <= 1
    assert len(out.cameras) == 2 and out.cameras.width == 16
    pil = _run(tiny_pipeline, output_type="pil")
    assert len(pil.images) == 1 and pil.images[0][0].size == (16, 16)


def test_same_seed_same_output_and_seed_matters(tiny_pipeline):
    a = _run(tiny_pipeline).images
    b = _run(tiny_pipeline).images
    c = _run(tiny_pipeline, generator=torch.Generator().manual_seed(1)).images
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)


def test_given_cameras_are_honoured(tiny_pipeline):
    cams = orbit(3, elevation=[0.0, 30.0, 60.0], azimuth_start=45.0, width=64)
    out = _run(tiny_pipeline, cameras=cams, output_type="latent")
    assert out.images.shape == (1, 3, 4, 8, 8)
    assert torch.allclose(out.cameras.c2w, cams.c2w)
    assert out.cameras.width == 16  # intrinsics rescaled to the output size
    other = _run(tiny_pipeline, cameras=orbit(3, elevation=10.0, width=64), output_type="latent")
    assert not torch.allclose(out.images, other.images)  # camera conditioning reaches the output


def test_guidance_and_step_callback(tiny_pipeline):
    seen = []

    def cb(pipe, i, t, kw):
        seen.append((i, kw["latents"].shape))
        return kw

    _run(tiny_pipeline, guidance_scale=1.0, callback_on_step_end=cb)
    assert [s[0] for s in seen] == [0, 1]
    assert seen[0][1] == (1, 2, 4, 8, 8)


def test_save_load_round_trip_same_output(tiny_pipeline, text_encoder, tmp_path):
    tiny_pipeline.save_pretrained(tmp_path / "pipe")
    index = json.loads((tmp_path / "pipe" / "model_index.json").read_text())
    assert index["text_encoder"] == [None, None]  # referenced by name, never stored
    assert not list((tmp_path / "pipe").rglob("*.bin"))
    tok, enc = text_encoder
    loaded = PTDiTMultiViewPipeline.from_pretrained(tmp_path / "pipe", tokenizer=tok, text_encoder=enc)
    np.testing.assert_allclose(_run(tiny_pipeline).images, _run(loaded).images, atol=1e-5)


@pytest.mark.parametrize("kw, message", [
    (dict(num_views=0), "num_views"),
    (dict(num_views=33), "num_views"),
    (dict(num_inference_steps=0), "num_inference_steps"),
    (dict(guidance_scale=-1.0), "guidance_scale"),
    (dict(output_type="jpg"), "output_type"),
])
def test_bad_arguments(tiny_pipeline, kw, message):
    with pytest.raises(ValueError, match=message):
        _run(tiny_pipeline, **kw)


def test_bad_prompts(tiny_pipeline):
    with pytest.raises(ValueError, match="empty"):
        tiny_pipeline("  ", num_views=2, num_inference_steps=1)
    with pytest.raises(ValueError, match="tokens"):
        tiny_pipeline("mug " * 100, num_views=2, num_inference_steps=1)


def test_missing_or_pickled_model_folder(tiny_pipeline, tmp_path):
    with pytest.raises(FileNotFoundError, match="model_index.json"):
        PTDiTMultiViewPipeline.from_pretrained(tmp_path / "nothing")
    tiny_pipeline.save_pretrained(tmp_path / "pipe")
    for f in (tmp_path / "pipe" / "transformer").glob("*.safetensors"):
        f.rename(f.with_suffix(".bin"))
    with pytest.raises(FileNotFoundError, match="pickled weights are refused"):
        PTDiTMultiViewPipeline.from_pretrained(tmp_path / "pipe")


def test_saved_pipeline_loads_in_a_fresh_process(tiny_pipeline, tmp_path):
    """diffusers only finds our transformer class if its module is imported: from_pretrained must do it."""
    import subprocess
    import sys

    tiny_pipeline.save_pretrained(tmp_path / "pipe")
    code = ("from mvgen.pipeline import PTDiTMultiViewPipeline as P; "
            f"p = P.from_pretrained(r'{tmp_path / 'pipe'}'); print(type(p.transformer).__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("PTDiTTransformer3DModel")


def test_steering_at_the_last_step_lands_on_the_steered_views(tiny_pipeline):
    import torch

    seen = []
    target = torch.full((3, 3, 16, 16), 0.8)
    target[:, 0] = 0.2

    def steer(images, cameras):
        seen.append((tuple(images.shape), len(cameras)))
        assert images.min() >= 0 and images.max() <= 1
        return target

    kw = dict(num_views=3, num_inference_steps=4, generator=None, output_type="latent")
    plain = tiny_pipeline("a red mug", **{**kw, "generator": torch.Generator().manual_seed(0)}).images
    out = tiny_pipeline("a red mug", steer=steer, steer_steps=[3], **{**kw, "generator": torch.Generator().manual_seed(0)})
    assert seen == [((3, 3, 16, 16), 3)]
    # The last step ends at sigma 0: the sample is the steered clean estimate, i.e. the encoding of the target.
    assert torch.allclose(out.images[0], tiny_pipeline.encode_images(target[None])[0], atol=1e-4)
    assert not torch.allclose(plain[0], out.images[0], atol=1e-2)
    half = tiny_pipeline("a red mug", steer=steer, steer_steps=[3], steer_strength=0.0,
                         **{**kw, "generator": torch.Generator().manual_seed(0)})
    assert torch.allclose(half.images, plain, atol=1e-4)  # strength 0 changes nothing
    with pytest.raises(ValueError, match="one prompt"):
        tiny_pipeline(["a red mug", "a blue vase"], steer=steer, steer_steps=[3], **kw)
    with pytest.raises(ValueError, match="steer_strength"):
        tiny_pipeline("a red mug", steer=steer, steer_steps=[3], steer_strength=1.5, **kw)


@pytest.mark.parametrize("fast_bf16", [True, False])
def test_auto_precision_follows_the_cpus_bf16(tiny_pipeline, monkeypatch, fast_bf16):
    """"auto" samples under bf16 autocast only on a CPU that multiplies bf16 natively; elsewhere (emulated bf16,
    ~10x slower than fp32) it is exactly the fp32 run."""
    monkeypatch.setattr("mvgen.device.cpu_has_fast_bf16", lambda: fast_bf16)
    auto = _run(tiny_pipeline, output_type="latent").images
    fp32 = _run(tiny_pipeline, output_type="latent", autocast=False).images
    bf16 = _run(tiny_pipeline, output_type="latent", autocast=True).images
    assert not torch.equal(fp32, bf16)  # the two precisions differ, so the test can tell them apart
    assert torch.equal(auto, bf16 if fast_bf16 else fp32)


def test_contrast_guidance_equals_its_formula(tiny_pipeline):
    """One Euler step is linear in the velocity, so a run with a contrast prompt equals runs without one:
    out = cfg(prompt) + s * (cond(prompt) - cond(contrast)), each term from its own run (guidance 0 = no CFG)."""
    x = torch.randn(1, 2, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # zero-initialised layers (adaLN, outputs) get weights, so the prompt reaches the output
        for p in tiny_pipeline.transformer.parameters():
            if not p.any():
                p.copy_(0.1 * torch.randn(p.shape, generator=g))

    def run(prompt, **kw):
        return tiny_pipeline(prompt, num_views=2, latents=x.clone(), num_inference_steps=1, output_type="latent",
                             autocast=False, **kw).images

    prompt = "a red chair with white legs"
    got = run(prompt, guidance_scale=2.0, contrast_prompt="a red chair", contrast_scale=3.0)
    ref = run(prompt, guidance_scale=2.0) + 3.0 * (run(prompt, guidance_scale=0.0) - run("a red chair", guidance_scale=0.0))
    effect = (got - run(prompt, guidance_scale=2.0)).abs().max()  # what the contrast term changes
    error = (got - ref).abs().max()
    assert effect > 1e-5 and error < 1e-2 * effect, (effect, error)
    same = run(prompt, guidance_scale=2.0, contrast_prompt=prompt, contrast_scale=3.0)
    assert torch.allclose(same, run(prompt, guidance_scale=2.0), atol=1e-5)  # contrast = prompt: no change
    no_cfg = run(prompt, guidance_scale=1.0, contrast_prompt="a red chair", contrast_scale=3.0)
    cond, contrast = run(prompt, guidance_scale=0.0), run("a red chair", guidance_scale=0.0)
    assert torch.allclose(no_cfg, cond + 3.0 * (cond - contrast), atol=1e-5)  # guidance <= 1: no CFG rows


@pytest.mark.parametrize("kw, message", [
    (dict(contrast_scale=2.0), "contrast_prompt"),
    (dict(contrast_scale=-1.0, contrast_prompt="a red mug"), "contrast_scale"),
    (dict(contrast_scale=2.0, contrast_prompt=""), "contrast_prompt"),
    (dict(contrast_scale=2.0, contrast_prompt=["a", "b"]), "contrast_prompt"),
])
def test_bad_contrast_arguments(tiny_pipeline, kw, message):
    with pytest.raises(ValueError, match=message):
        _run(tiny_pipeline, **kw)
