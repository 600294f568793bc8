"""`accelerate launch --num_processes 2` on the CPU (gloo) runs the real trainer (issue 18): the same global batch
split into per-process shards, one checkpoint writer, resumable, and the loss curve of one process."""

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
import yaml
from safetensors.torch import load_file

from mvgen.trainutil import read_log
from tests.generation.test_train import tiny_data, tiny_vae  # noqa: F401  (module fixtures)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(config, out, processes: int, *extra) -> str:
    launch = ([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--num_cpu_threads_per_process", "1", "--main_process_port", str(_free_port())]
              if processes > 1 else [sys.executable])
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", HF_HUB_OFFLINE="1")
    p = subprocess.run([*launch, "-m", "mvgen.cli", "train", "--config", str(config), "--out", str(out), *extra],
                       capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return p.stdout


def test_two_processes_train_like_one_and_resume(tiny_data, tiny_vae, tmp_path):  # noqa: F811
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({
        "data": str(tiny_data / "d"), "vae": str(tiny_vae), "preset": "tiny", "resolution": 32,
        "model": {"num_layers": 1, "num_attention_heads": 2, "attention_head_dim": 16},
        "views_min": 2, "views_max": 3, "batch_size": 4, "steps": 3, "warmup": 1, "save_every": 1,
        "sample_every": 0, "log_every": 1, "mixed_precision": "no", "device": "cpu", "caption_augment": 0.5}))
    _train(config, tmp_path / "one", 1, "--steps", "2")  # a resumed run draws anew from step 2 (seed + step):
    _train(config, tmp_path / "one", 1, "--resume")  # compare resumed with resumed
    out = _train(config, tmp_path / "two", 2, "--steps", "2")
    assert out.count('"pipeline"') == 1  # one process reports
    ckpt = tmp_path / "two" / "checkpoint-2"
    assert {"random_states_0.pkl", "random_states_1.pkl", "model.safetensors"} <= {p.name for p in ckpt.iterdir()}
    _train(config, tmp_path / "two", 2, "--resume")  # continues to step 3 on both processes

    one, two = read_log(tmp_path / "one" / "loss.csv"), read_log(tmp_path / "two" / "loss.csv")
    assert [r["step"] for r in two] == ["1", "2", "3"] and [r["views"] for r in two] == [r["views"] for r in one]
    assert [float(r["lr"]) for r in two] == [float(r["lr"]) for r in one]  # the scheduler steps once per step
    assert [float(r["loss"]) for r in two] == pytest.approx([float(r["loss"]) for r in one], rel=1e-4)
    names = sorted(p.name for p in (tmp_path / "two").iterdir())
    assert names == ["checkpoint-2", "checkpoint-3", "config.yaml", "latent_cache.safetensors", "loss.csv",
                     "loss.png"]  # one writer: no temp folders left, nothing written twice
    w1 = load_file(str(tmp_path / "one" / "checkpoint-3" / "pipeline" / "transformer" /
                       "diffusion_pytorch_model.safetensors"))
    w2 = load_file(str(tmp_path / "two" / "checkpoint-3" / "pipeline" / "transformer" /
                       "diffusion_pytorch_model.safetensors"))
    assert w1.keys() == w2.keys() and all(torch.allclose(w1[k], w2[k], atol=1e-5) for k in w1)


def test_scaling_bench_times_one_and_two_processes_at_the_same_per_process_batch(tiny_data, tiny_vae,  # noqa: F811
                                                                                 tmp_path, capsys):
    from mvgen.cli import main
    from mvgen.scaling_bench import throughput

    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({
        "data": str(tiny_data / "d"), "vae": str(tiny_vae), "preset": "tiny", "resolution": 32,
        "model": {"num_layers": 1, "num_attention_heads": 2, "attention_head_dim": 16}, "mixed_precision": "no"}))
    out = tmp_path / "scaling"
    assert main(["bench", "scaling", "--config", str(config), "--out", str(out), "--steps", "4", "--warmup", "1",
                 "--per-process-batch", "2", "--views", "2", "--json", str(tmp_path / "s.json")]) == 0
    rows = json.loads((tmp_path / "s.json").read_text())
    assert [(r["processes"], r["global_batch"]) for r in rows] == [(1, 2), (2, 4)]
    assert all(r["samples_per_s"] > 0 and r["s_per_step"] > 0 for r in rows) and rows[0]["speedup"] == 1.0
    assert os.path.samefile(out / "p1" / "latent_cache.safetensors", out / "p2" / "latent_cache.safetensors")
    assert "| 2 | 1 | 2 | 4 |" in capsys.readouterr().out
    # the timing: steps after the warm-up, from the loss log's clock
    log = [{"step": str(s), "time": str(t)} for s, t in ((1, 5.0), (2, 6.0), (3, 7.0), (4, 8.0))]
    assert throughput(log, 4, 1) == pytest.approx({"s_per_step": 1.0, "samples_per_s": 4.0})
    with pytest.raises(ValueError, match="--warmup"):
        throughput(log, 4, 3)
    assert main(["bench", "scaling", "--config", str(config), "--steps", "3", "--warmup", "2"]) == 2
