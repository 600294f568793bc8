"""Smoke tests of the trainers on a tiny generated dataset: they write loadable folders and resume."""

import csv
import json
import os

import pytest
import torch

from mvgen.cli import main
from mvgen.train import TrainConfig, train
from mvgen.trainutil import checkpoint_dirs
from mvgen.vae import VAETrainConfig, train_vae


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    assert main(["dataset", "--out", str(root / "d"), "--objects", "4", "--views", "4", "--resolution", "32"]) == 0
    return root


@pytest.fixture(scope="module")
def tiny_vae(tiny_data):
    cfg = VAETrainConfig(data=str(tiny_data / "d"), out=str(tiny_data / "vae"), resolution=32, crop=16,
                         block_out_channels=(8, 16), latent_channels=4, steps=2, batch_size=2, eval_views=4,
                         save_every=1, log_every=1)
    folder = train_vae(cfg)
    return folder


def test_vae_training_writes_a_loadable_autoencoder_with_data_scaling(tiny_vae):
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(tiny_vae, use_safetensors=True)
    assert vae.config.latent_channels == 4
    assert vae.config.scaling_factor != 0.18215  # set from the measured latent std, not a constant
    report = json.loads((tiny_vae.parent / "vae_report.json").read_text())
    assert report["psnr"] > 0 and report["views"] == 4
    assert (tiny_vae.parent / "loss.csv").read_text().count("\n") == 3  # header + 2 steps


def test_vae_training_resumes_and_refuses_to_overwrite(tiny_data, tmp_path):
    cfg = VAETrainConfig(data=str(tiny_data / "d"), out=str(tmp_path / "vae"), resolution=32, crop=16,
                         block_out_channels=(8, 16), latent_channels=4, steps=1, batch_size=2, eval_views=2,
                         save_every=1, log_every=1)
    train_vae(cfg)
    with pytest.raises(ValueError, match="--resume"):
        train_vae(cfg)
    cfg.steps = 2
    train_vae(cfg, resume=True)
    assert [c.name for c in checkpoint_dirs(tmp_path / "vae")] == ["checkpoint-1", "checkpoint-2"]
    steps = [line.split(",")[0] for line in (tmp_path / "vae" / "loss.csv").read_text().splitlines()[1:]]
    assert steps == ["1", "2"]


def test_decoder_fine_tune_keeps_the_latents_and_export_accepts_only_that_vae(tiny_data, tiny_vae, tmp_path):
    from diffusers import AutoencoderKL

    from mvgen.train import export_pipeline
    from mvgen.vae import encoder_state

    small = dict(data=str(tiny_data / "d"), resolution=32, crop=32, steps=2, batch_size=2, eval_views=2,
                 save_every=2, log_every=1, lr=1e-2)
    with pytest.raises(ValueError, match="init_from"):
        train_vae(VAETrainConfig(out=str(tmp_path / "bad"), train_encoder=False, **small))
    dec = train_vae(VAETrainConfig(out=str(tmp_path / "dec"), init_from=str(tiny_vae), train_encoder=False, **small))
    old, new = (AutoencoderKL.from_pretrained(f, use_safetensors=True) for f in (tiny_vae, dec))
    enc_old, enc_new = encoder_state(old), encoder_state(new)
    assert all(torch.equal(enc_old[k], enc_new[k]) for k in enc_old)  # frozen encoder: same latents
    assert new.config.scaling_factor == old.config.scaling_factor
    assert not torch.equal(old.decoder.conv_out.weight, new.decoder.conv_out.weight)  # the decoder learned

    final = train(_cfg(tiny_data, tiny_vae, tmp_path / "run", steps=1))
    dst = tmp_path / "shipped"
    (dst / "training").mkdir(parents=True)
    (dst / "training" / "notes.txt").write_text("kept")
    export_pipeline(final, dst, vae=dec)
    assert (dst / "training" / "notes.txt").read_text() == "kept"
    shipped = AutoencoderKL.from_pretrained(dst / "vae", use_safetensors=True)
    assert torch.equal(shipped.decoder.conv_out.weight, new.decoder.conv_out.weight.to(torch.bfloat16))
    other = train_vae(VAETrainConfig(out=str(tmp_path / "other"), block_out_channels=(8, 16), latent_channels=4,
                                     seed=1, **small))
    with pytest.raises(ValueError, match="encoder"):
        export_pipeline(final, tmp_path / "refused", vae=other)
    assert not (tmp_path / "refused").exists()


def _cfg(tiny_data, tiny_vae, out, steps=2):
    return TrainConfig(data=str(tiny_data / "d"), out=str(out), vae=str(tiny_vae), preset="tiny",
                       model={"num_layers": 1, "num_attention_heads": 2, "attention_head_dim": 16},
                       resolution=32, views_min=2, views_max=3, batch_size=2, steps=steps, warmup=1,
                       save_every=1, sample_every=0, log_every=1)


def test_train_two_steps_writes_a_loadable_pipeline_and_resumes(tiny_data, tiny_vae, tmp_path):
    from mvgen.pipeline import PTDiTMultiViewPipeline

    final = train(_cfg(tiny_data, tiny_vae, tmp_path / "run"))
    assert final.name == "pipeline" and final.parent.name == "checkpoint-2"
    pipe = PTDiTMultiViewPipeline.from_pretrained(final)
    out = pipe("a red mug", num_views=3, num_inference_steps=2, output_type="np",
               generator=torch.Generator().manual_seed(0))
    assert out.images.shape == (1, 3, 32, 32, 3)
    # Resume continues from checkpoint-2 to 3 and keeps the loss log.
    before = torch.load(final.parent / "optimizer.bin", weights_only=True)["state"]
    assert before  # optimizer state was checkpointed
    final3 = train(_cfg(tiny_data, tiny_vae, tmp_path / "run", steps=3), resume=True)
    assert final3.parent.name == "checkpoint-3"
    assert [c.name for c in checkpoint_dirs(tmp_path / "run")] == ["checkpoint-2", "checkpoint-3"]
    steps = [line.split(",")[0] for line in (tmp_path / "run" / "loss.csv").read_text().splitlines()[1:]]
    assert steps == ["1", "2", "3"]
    # Starting over an existing run without --resume is refused (nothing is overwritten).
    with pytest.raises(ValueError, match="--resume"):
        train(_cfg(tiny_data, tiny_vae, tmp_path / "run", steps=4))


def _has_compiler() -> bool:
    from mvgen.device import DeviceError, check_compiler

    try:
        check_compiler("cpu")
    except DeviceError:
        return False
    return True


@pytest.mark.skipif(not _has_compiler(), reason="torch.compile on the CPU needs a C++ compiler")
def test_compiled_training_follows_the_eager_run_and_saves_plain_weights(tiny_data, tiny_vae, tmp_path):
    """``compile: true``: the same losses and weights as the eager run (within bf16 rounding), the EMA sample grid
    and the pipeline come from an eager copy holding the EMA weights, and the checkpoint loads as usual."""
    from mvgen.pipeline import PTDiTMultiViewPipeline

    runs = {}
    for compile_blocks in (False, True):
        cfg = _cfg(tiny_data, tiny_vae, tmp_path / f"run{int(compile_blocks)}", steps=3)
        cfg.views_min = cfg.views_max = 2  # one shape: one compile
        cfg.compile, cfg.sample_every, cfg.sample_steps = compile_blocks, 3, 2
        final = train(cfg)
        with open(final.parents[1] / "loss.csv") as f:
            losses = [float(row["loss"]) for row in csv.DictReader(f)]
        weights = PTDiTMultiViewPipeline.from_pretrained(final).transformer.state_dict()
        runs[compile_blocks] = losses, weights
        assert (final.parents[1] / "samples" / "step000003.png").is_file()
    (eager_losses, eager_w), (comp_losses, comp_w) = runs[False], runs[True]
    assert len(comp_losses) == 3
    torch.testing.assert_close(torch.tensor(comp_losses), torch.tensor(eager_losses), rtol=0.02, atol=0)
    assert list(comp_w) == list(eager_w)
    moved = [k for k in eager_w if not torch.equal(eager_w[k], comp_w[k])]
    for k in eager_w:
        torch.testing.assert_close(comp_w[k].float(), eager_w[k].float(), rtol=0.05, atol=2e-3)
    assert moved  # the two runs are separate computations, not one cached model


def test_lr_factor_warms_up_then_decays_to_lr_min():
    from mvgen.train import lr_factor

    cfg = TrainConfig(lr=1e-3, lr_min=1e-4, warmup=10, steps=110, lr_schedule="cosine")
    f = [lr_factor(s, cfg) for s in range(111)]
    assert f[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert f[10] == pytest.approx(1.0) and f[60] == pytest.approx(0.55) and f[110] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(f[10:], f[11:]))  # monotone after warm-up
    constant = TrainConfig(lr=1e-3, warmup=10, steps=110)
    assert [lr_factor(s, constant) for s in (10, 50, 110)] == [1.0, 1.0, 1.0]


def test_cosine_run_logs_the_scheduled_lr_and_bad_schedules_are_refused(tiny_data, tiny_vae, tmp_path):
    from mvgen.train import lr_factor

    cfg = _cfg(tiny_data, tiny_vae, tmp_path / "run", steps=4)
    cfg.lr, cfg.lr_min, cfg.lr_schedule = 1e-3, 1e-4, "cosine"
    train(cfg)
    rows = [line.split(",") for line in (tmp_path / "run" / "loss.csv").read_text().splitlines()]
    lr = [float(r[rows[0].index("lr")]) for r in rows[1:]]
    assert lr == pytest.approx([1e-3 * lr_factor(k, cfg) for k in (1, 2, 3, 4)]) and lr[-1] == pytest.approx(1e-4)
    for bad in ({"lr_schedule": "linear"}, {"lr_min": 1.0}, {"warmup": -1}):
        with pytest.raises(ValueError, match="lr_schedule"):
            train(TrainConfig(**{**cfg.__dict__, "out": str(tmp_path / "bad"), **bad}))
        assert not (tmp_path / "bad").exists()


def test_generate_command_writes_all_files(tiny_data, tiny_vae, tmp_path):
    from mvgen.cameras import load_views

    final = train(_cfg(tiny_data, tiny_vae, tmp_path / "run", steps=1))
    out = tmp_path / "g"
    assert main(["generate", "a red mug", "--views", "3", "--steps", "2", "--seed", "0", "--model", str(final),
                 "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["prompt"] == "a red mug" and manifest["views"] == 3 and len(manifest["model_hash"]) == 16
    assert (out / "grid.png").is_file()
    views = load_views(out)  # the folder is a valid posed-image folder for reconstruction
    assert views.images.shape == (3, 4, 32, 32)
    assert main(["generate", "", "--out", str(tmp_path / "bad"), "--model", str(final)]) == 2
    assert main(["generate", "a red mug", "--views", "40", "--out", str(tmp_path / "bad"), "--model", str(final)]) == 2
    assert main(["generate", "a red mug", "--out", str(tmp_path / "bad"), "--model", str(tmp_path / "nope")]) == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith((".bad", "bad"))]  # nothing half-written


def test_ablation_bench_trains_and_scores_both_variants(tiny_data, tiny_vae, tmp_path):
    import yaml

    from mvgen.train_bench import run_ablation

    base = tmp_path / "base.yaml"
    cfg = _cfg(tiny_data, tiny_vae, tmp_path / "unused", steps=1)
    base.write_text(yaml.safe_dump({k: v for k, v in cfg.__dict__.items()}))
    rows = run_ablation(str(base), tmp_path / "abl", steps=1, variants=["proxy", "full"], eval_limit=2, eval_steps=1,
                        json_path=tmp_path / "rows.json")
    assert [r["attention_type"] for r in rows] == ["proxy", "full"]
    assert json.loads((tmp_path / "rows.json").read_text()) == rows  # written after each variant
    assert rows[0]["params"] != rows[1]["params"]  # really two different architectures
    assert all(0 <= r["retrieval_top1"] <= 1 and r["s_per_step"] > 0 for r in rows)
    assert (tmp_path / "abl" / "loss_curves.png").is_file()
    # the second variant trains on the first one's latents (one VAE pass over the dataset)
    assert os.path.samefile(tmp_path / "abl" / "proxy" / "latent_cache.safetensors",
                            tmp_path / "abl" / "full" / "latent_cache.safetensors")


def test_ablation_runs_keep_their_checkpoints_to_resume(tiny_data, tiny_vae, tmp_path):
    """A long ablation stopped mid-run resumes from its last checkpoint: runs keep the config's save_every."""
    import yaml

    from mvgen.train_bench import run_ablation

    base = tmp_path / "base.yaml"
    cfg = _cfg(tiny_data, tiny_vae, tmp_path / "unused", steps=2)
    cfg.save_every = 1
    base.write_text(yaml.safe_dump({k: v for k, v in cfg.__dict__.items()}))
    first = run_ablation(str(base), tmp_path / "abl", steps=2, variants=["full"], eval_limit=1, eval_steps=1)
    assert [d.name for d in checkpoint_dirs(tmp_path / "abl" / "full")] == ["checkpoint-1", "checkpoint-2"]
    # run again (a finished run resumes at its last checkpoint, only scores): the training time is the run's, from
    # its log, not the seconds of the call that merely loaded it
    again = run_ablation(str(base), tmp_path / "abl", steps=2, variants=["full"], eval_limit=1, eval_steps=1)
    assert again[0]["run_s"] == first[0]["run_s"] > 0 and again[0]["psnr"] == first[0]["psnr"]


def test_ablation_bench_scores_mediator_schedules_on_one_model(tiny_data, tiny_vae, tmp_path):
    import yaml

    from mvgen.train_bench import run_ablation

    base = tmp_path / "base.yaml"
    cfg = _cfg(tiny_data, tiny_vae, tmp_path / "unused", steps=1)
    base.write_text(yaml.safe_dump({k: v for k, v in cfg.__dict__.items()}))
    rows = run_ablation(str(base), tmp_path / "abl", steps=1, variants=["mediator"], eval_limit=2, eval_steps=1,
                        mediator_schedules=(4, "500:4,0:16"), json_path=tmp_path / "rows.json")
    assert json.loads((tmp_path / "rows.json").read_text()) == rows
    assert [r["mediator_schedule"] for r in rows] == ["16", "4", "500:4,0:16"]  # the largest count first
    assert len({r["params"] for r in rows}) == 1 and len({r["run_s"] for r in rows}) == 1  # one trained model
    assert all(r["sample_s_per_prompt"] > 0 and r["sample_s_per_prompt_median"] > 0 for r in rows)


def test_caption_augmentation_rewrites_captions_in_free_wording(tiny_data, tiny_vae, tmp_path):
    from diffusers import AutoencoderKL

    from mvgen.text import encode_text, load_text_encoder
    from mvgen.latent_cache import LatentCache

    cfg = _cfg(tiny_data, tiny_vae, tmp_path / "run")
    tok, enc = load_text_encoder()
    vae = AutoencoderKL.from_pretrained(tiny_vae, use_safetensors=True)
    (tmp_path / "run").mkdir()
    cache = LatentCache(cfg, vae, tok, enc, tmp_path / "run")
    plain = cache.batch(4, 2, 0.0, torch.Generator().manual_seed(0), augment=0.0)
    free = cache.batch(4, 2, 0.0, torch.Generator().manual_seed(0), augment=1.0)
    assert torch.equal(plain[0], free[0]) and torch.equal(plain[1], free[1])  # same objects and views
    assert plain[4] is None  # no per-part supervision: a plain mean
    for emb, mask in (plain[2:4], free[2:4]):
        assert emb.shape[:2] == mask.shape and mask[:, 0].all()
        assert (emb[mask == 0] == 0).all()  # padding is zero and masked
    # Without augmentation a sample's embedding is its caption's own encoding; with it, another wording's.
    idx = torch.randint(len(cache.latents), (4,), generator=torch.Generator().manual_seed(0))
    own, own_mask = encode_text(tok, enc, [cache.captions[int(idx[0])]])
    n = int(own_mask.sum())
    assert torch.allclose(plain[2][0, :n], own[0, :n], atol=1e-5) and int(plain[3][0].sum()) == n
    assert not all(int(free[3][k].sum()) == int(plain[3][k].sum()) and torch.allclose(free[2][k], plain[2][k])
                   for k in range(4))
    with pytest.raises(ValueError, match="caption_augment"):
        train(TrainConfig(**{**cfg.__dict__, "caption_augment": 1.5, "out": str(tmp_path / "bad")}))


def test_part_supervision_weights_the_cells_the_part_covers(tiny_data, tiny_vae, tmp_path):
    from diffusers import AutoencoderKL

    from mvgen.cameras import find_transforms, read_transforms
    from mvgen.data.dataset import read_index
    from mvgen.data.part_masks import PART_CACHE_NAME, part_coverage
    from mvgen.latent_cache import LatentCache
    from mvgen.text import load_text_encoder
    from mvgen.train import weighted_mse

    cfg = _cfg(tiny_data, tiny_vae, tmp_path / "run", steps=1)
    cfg.part_weight = 3.0
    tok, enc = load_text_encoder()
    vae = AutoencoderKL.from_pretrained(tiny_vae, use_safetensors=True)
    (tmp_path / "run").mkdir()
    cache = LatentCache(cfg, vae, tok, enc, tmp_path / "run")
    lat, _, _, _, w = cache.batch(4, 2, 0.0, torch.Generator().manual_seed(0))
    assert w.shape == (4, 2, 1, *lat.shape[-2:]) and (w >= 1).all() and (w <= 4).all() and (w > 1).any()
    # the weights are the rendered part maps of the drawn objects and views
    idx = torch.randint(len(cache.latents), (4,), generator=torch.Generator().manual_seed(0))
    rec = [r for r in read_index(tiny_data / "d") if r.split == "train"][int(idx[0])]
    cams, _ = read_transforms(find_transforms(rec.folder))
    cover = torch.from_numpy(part_coverage(rec.caption, cams, lat.shape[-1]))
    assert any(torch.allclose(w[0, 0, 0], 1 + 3 * cover[v], atol=3e-3) for v in range(len(cover)))
    # the cache file is read back, not rendered again
    again = LatentCache(cfg, vae, tok, enc, tmp_path / "run")
    assert torch.equal(again.parts.coverage, cache.parts.coverage) and (tmp_path / "run" / PART_CACHE_NAME).is_file()
    # weighted mean: the plain mean for constant weights, more weight where the weights are larger
    pred, target = torch.zeros(2, 2, 3, 4, 4), torch.zeros(2, 2, 3, 4, 4)
    target[..., 0, 0] = 1.0
    ones = torch.ones(2, 2, 1, 4, 4)
    assert torch.allclose(weighted_mse(pred, target, 2 * ones), weighted_mse(pred, target))
    heavy = ones.clone()
    heavy[..., 0, 0] = 5.0
    assert weighted_mse(pred, target, heavy) > 2 * weighted_mse(pred, target)
    assert train(cfg).is_dir()  # a run with part supervision trains
    with pytest.raises(ValueError, match="part_weight"):
        train(TrainConfig(**{**cfg.__dict__, "part_weight": -1.0, "out": str(tmp_path / "bad")}))


def test_mediator_model_trains_over_several_counts_and_bad_steps_are_refused(tiny_data, tiny_vae, tmp_path):
    from mvgen.pipeline import PTDiTMultiViewPipeline

    cfg = _cfg(tiny_data, tiny_vae, tmp_path / "run", steps=2)
    cfg.model = {**cfg.model, "attention_type": "mediator", "mediator_counts": (4, 16)}
    final = train(cfg)
    pipe = PTDiTMultiViewPipeline.from_pretrained(final)
    assert pipe.transformer.config.attention_type == "mediator"
    assert tuple(pipe.transformer.config.mediator_counts) == (4, 16)
    with pytest.raises(ValueError, match="steps"):
        train(TrainConfig(**{**cfg.__dict__, "steps": -1, "out": str(tmp_path / "bad")}))
