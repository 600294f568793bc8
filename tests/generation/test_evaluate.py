"""Generation-vs-ground-truth evaluation: an oracle generator scores perfectly, a real one gets finite scores."""

import math
from types import SimpleNamespace

import pytest

from mvgen.evaluate import eval_rig, evaluate_generation, render_truth, retrieval_distances

CAPTIONS = ["a red mug", "a blue chair", "a yellow car"]


class Oracle:
    """Returns the ground-truth renders: retrieval must be perfect and LPIPS ~0."""

    image_size = 32

    def __call__(self, prompt, cameras, **kw):
        return SimpleNamespace(images=render_truth(prompt, cameras)[None])


class Swapped(Oracle):
    """Returns the ground truth of the *next* caption: retrieval must be 0."""

    def __call__(self, prompt, cameras, **kw):
        nxt = CAPTIONS[(CAPTIONS.index(prompt) + 1) % len(CAPTIONS)]
        return SimpleNamespace(images=render_truth(nxt, cameras)[None])


def test_oracle_and_swapped_generators():
    rep = evaluate_generation(Oracle(), CAPTIONS, views=2, steps=1)
    assert rep["retrieval_top1"] == 1.0
    assert rep["lpips"] < 1e-3 and rep["ssim"] > 0.999 and math.isinf(rep["psnr"])
    assert rep["lpips_impl"] in ("lpips-alex-v0.1", "stlpips-alex-shift-tolerant")
    bad = evaluate_generation(Swapped(), CAPTIONS, views=2, steps=1)
    assert bad["retrieval_top1"] == 0.0 and bad["psnr"] < 25


@pytest.mark.parametrize("autocast, name", [(False, "fp32"), (True, "bf16")])
def test_precision_reaches_every_sample_and_the_report(autocast, name):
    calls = []

    class Recording(Oracle):
        def __call__(self, prompt, cameras, **kw):
            calls.append(kw["autocast"])
            return super().__call__(prompt, cameras, **kw)

    rep = evaluate_generation(Recording(), CAPTIONS[:2], views=2, steps=1, autocast=autocast)
    assert calls == [autocast, autocast] and rep["precision"] == name


def test_unknown_precision_is_refused_before_the_model_loads():
    from mvgen.cli import main

    for what in ("generation", "attributes", "wording"):
        with pytest.raises(SystemExit) as e:
            main(["evaluate", what, "--precision", "fp16"])
        assert e.value.code == 2


def test_batched_retrieval_distances_equal_one_pair_at_a_time():
    import torch

    from mvgen.data.captions import parse_caption
    from mvgen.data.objects import build_mesh
    from mvgen.metrics import get_lpips

    lpips_fn, rig = get_lpips(), eval_rig(0, 2, 32, seed=0)
    gen = render_truth(CAPTIONS[1], rig) * 0.9 + 0.05
    meshes = [build_mesh(parse_caption(c)) for c in CAPTIONS]
    batched = retrieval_distances(lpips_fn, gen, meshes, CAPTIONS, rig, chunk=2)  # chunks of 2 and 1
    reference = torch.stack([lpips_fn(gen, render_truth(c, rig)).mean() for c in CAPTIONS])
    torch.testing.assert_close(batched, reference, rtol=1e-4, atol=1e-5)
    assert int(batched.argmin()) == 1


def test_rigs_are_deterministic_and_differ_per_caption():
    a, b = eval_rig(0, 4, 32, seed=0), eval_rig(0, 4, 32, seed=0)
    assert (a.c2w == b.c2w).all()
    assert not (eval_rig(1, 4, 32, seed=0).c2w == a.c2w).all()


def test_tiny_pipeline_scores_are_finite(tiny_pipeline_factory):
    pipe = tiny_pipeline_factory(latent=16)  # 32x32 views: LPIPS needs more than 16x16
    rep = evaluate_generation(pipe, CAPTIONS[:2], views=2, steps=1)
    assert rep["n"] == 2 and 0.0 <= rep["retrieval_top1"] <= 1.0
    for k in ("psnr", "ssim", "lpips"):
        assert math.isfinite(rep[k])
    assert len(rep["per_caption"]) == 2
    seconds = sorted(r["seconds"] for r in rep["per_caption"])  # generation time per prompt, timed alone
    assert all(s > 0 for s in seconds) and rep["seconds_per_prompt"] == pytest.approx(sum(seconds) / 2)
    assert rep["seconds_per_prompt_median"] == pytest.approx((seconds[0] + seconds[1]) / 2)


def test_limit_too_small_is_an_error():
    from mvgen.cli import main

    assert main(["evaluate", "generation", "--limit", "1"]) == 2
