"""Hostile command lines (design.md §7, issue 15), run in-process through ``mvgen.cli.main``: bad prompts, bad
numbers (nan, inf, negative, huge, text), bad paths (a file as a folder, a folder as a file, `..`, symlinks,
someone else's folder), bad YAML configs (including a code-running tag and an alias bomb), bad model folders
(pickles are never loaded) and argparse's own errors. Each gets exit 2 and one stderr line naming the field or the
file; a sentinel file next to the output and every file that was there survive, and no output is written."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from tests.reliability.hostile import assert_nothing_lost, run_cli, snapshot, with_sentinel
from tests.reliability.model_folders import MODEL_FOLDERS, build_model_folder

pytestmark = [pytest.mark.hostile("cli"), pytest.mark.filterwarnings("ignore::DeprecationWarning")]

NAN, INF = "nan", "inf"
OK = ["a red mug"]  # a valid prompt


def _gen(*extra):
    return lambda c: ["generate", *OK, "--out", c.out, *extra]


def _run(*extra):
    return lambda c: ["run", *OK, "--out", c.out, "--views-only", *extra]


def _rec(*extra):
    return lambda c: ["reconstruct", c.views, "--out", c.out, "--no-lpips", *extra]


def _cfg(text):
    """`mvgen run --config FILE` with FILE holding ``text`` (every config field is checked before the model loads;
    the CLI's own ranges replace views_min / views_max / steps_max / recon_steps_max)."""
    return lambda c: ["run", *OK, "--out", c.out, "--config", c.write("app.yaml", text)]


def _app_cfg(text):
    """`mvgen app --config FILE` on a free port: the config is read before anything is served."""
    from mvgen.job_bench import free_port

    return lambda c: ["app", "--host", "127.0.0.1", "--port", free_port(), "--config", c.write("app.yaml", text),
                      "--model", c.u]


# 9 levels of lists of 9 references to the level below: 9**9 items if anything expanded it (repr, copy)
ALIAS_BOMB = "views:\n  - &a [1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
    f"  - &{n} [{', '.join(['*' + p] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi"))

CASES = [
    # prompts
    ("generate_prompt_empty", lambda c: ["generate", "", "--out", c.out], "prompt is empty"),
    ("generate_prompt_blank", lambda c: ["generate", " \t\n ", "--out", c.out], "prompt is empty"),
    ("generate_prompt_301_chars", lambda c: ["generate", "x" * 301, "--out", c.out], "prompt is 301 characters"),
    ("generate_prompt_nul", lambda c: ["generate", "a red\0mug", "--out", c.out], "control character (U+0000)"),
    ("generate_prompt_escape_sequence", lambda c: ["generate", "a red mug\x1b[2J", "--out", c.out],
     "control character (U+001B)"),
    ("generate_prompt_bell", lambda c: ["generate", "\x07a red mug", "--out", c.out], "control character (U+0007)"),
    ("generate_prompt_delete", lambda c: ["generate", "a red mug\x7f", "--out", c.out], "control character (U+007F)"),
    ("run_prompt_empty", lambda c: ["run", "", "--out", c.out], "prompt is empty"),
    ("run_prompt_10k_chars", lambda c: ["run", "mug " * 2500, "--out", c.out], "prompt is 9999 characters"),
    ("run_prompt_nul", lambda c: ["run", "a\0", "--out", c.out], "control character (U+0000)"),
    ("run_no_prompt", lambda c: ["run", "--out", c.out], "give either a prompt or --prompts FILE"),
    ("run_prompt_and_prompts", lambda c: ["run", *OK, "--prompts", c.write("p.txt", "a red mug\n"), "--out", c.out],
     "give either a prompt or --prompts FILE"),
    ("run_prompts_missing", lambda c: ["run", "--prompts", c.u / "none.txt", "--out", c.out],
     "none.txt: cannot read"),
    ("run_prompts_a_folder", lambda c: ["run", "--prompts", c.u, "--out", c.out], "cannot read (Is a directory)"),
    ("run_prompts_binary", lambda c: ["run", "--prompts", c.write("p.txt", bytes(range(128, 256))), "--out", c.out],
     "p.txt: cannot read"),
    ("run_prompts_only_comments", lambda c: ["run", "--prompts", c.write("p.txt", "# a\n\n  # b\n"), "--out", c.out],
     "no prompts in the file"),
    ("run_prompts_empty_file", lambda c: ["run", "--prompts", c.write("p.txt", ""), "--out", c.out],
     "no prompts in the file"),
    ("run_prompts_long_line", lambda c: ["run", "--prompts", c.write("p.txt", "a red mug\n" + "y" * 400), "--out",
                                         c.out], "prompt is 400 characters"),
    ("run_prompts_control_char", lambda c: ["run", "--prompts", c.write("p.txt", "a red mug\x1b\n"), "--out", c.out],
     "control character (U+001B)"),
    # numbers of `mvgen generate`
    ("generate_views_0", _gen("--views", 0), "views must be in 1..32, got 0"),
    ("generate_views_33", _gen("--views", 33), "views must be in 1..32, got 33"),
    ("generate_views_negative", _gen("--views", -8), "views must be in 1..32, got -8"),
    ("generate_views_text", _gen("--views", "eight"), "argument --views: invalid int value: 'eight'"),
    ("generate_views_fraction", _gen("--views", "8.5"), "argument --views: invalid int value: '8.5'"),
    ("generate_elevation_nan", _gen("--elevation", NAN), "elevation must be a number of degrees in [-89, 89], got nan"),
    ("generate_elevation_inf", _gen("--elevation", INF), "elevation must be a number of degrees"),
    ("generate_elevation_95", _gen("--elevation", 95), "elevation must be a number of degrees in [-89, 89], got 95.0"),
    ("generate_elevation_text", _gen("--elevation", "high"), "argument --elevation: invalid float value: 'high'"),
    ("generate_steps_0", _gen("--steps", 0), "steps must be in 1..1000, got 0"),
    ("generate_steps_million", _gen("--steps", 10**6), "steps must be in 1..1000"),
    ("generate_guidance_negative", _gen("--guidance", -1), "guidance must be a number in [0, 20], got -1.0"),
    ("generate_guidance_nan", _gen("--guidance", NAN), "guidance must be a number in [0, 20], got nan"),
    ("generate_guidance_1e309", _gen("--guidance", "1e309"), "guidance must be a number in [0, 20], got inf"),
    ("generate_part_guidance_negative", _gen("--part-guidance", -1),
     "--part-guidance must be a number in [0, 20], got -1.0"),
    ("generate_part_guidance_nan", _gen("--part-guidance", NAN), "--part-guidance must be a number in [0, 20], got nan"),
    ("generate_seed_negative", _gen("--seed", -5), "seed must be in 0..9223372036854775807, got -5"),
    ("generate_seed_2_64", _gen("--seed", 2**64), "seed must be in 0..9223372036854775807"),
    ("generate_device_tpu", _gen("--device", "tpu"), "device"),
    ("generate_device_cuda_9", _gen("--device", "cuda:9"), "cuda:9"),
    ("generate_cameras_missing", lambda c: ["generate", *OK, "--out", c.out, "--cameras", c.u / "cams.json"],
     "cams.json: file not found"),
    ("generate_cameras_not_json", lambda c: ["generate", *OK, "--out", c.out, "--cameras", c.u / "sentinel.txt"],
     "sentinel.txt: not valid JSON"),
    ("generate_cameras_a_folder", lambda c: ["generate", *OK, "--out", c.out, "--cameras", c.views.parent],
     "cannot read (Is a directory)"),
    # numbers of `mvgen run`
    ("run_views_1", _run("--views", 1), "views must be in 2..32, got 1"),
    ("run_views_33", _run("--views", 33), "views must be in 2..32, got 33"),
    ("run_steps_1001", _run("--steps", 1001), "steps must be in 1..1000, got 1001"),
    ("run_recon_steps_0", _run("--recon-steps", 0), "recon_steps must be in 1..20000, got 0"),
    ("run_recon_steps_huge", _run("--recon-steps", 10**9), "recon_steps must be in 1..20000"),
    ("run_guidance_25", _run("--guidance", 25), "guidance must be a number in [0, 20], got 25.0"),
    ("run_guidance_neg_inf", _run("--guidance=-inf"), "guidance must be a number in [0, 20], got -inf"),
    ("run_part_guidance_25", _run("--part-guidance", 25), "part_guidance must be a number in [0, 20], got 25.0"),
    ("run_elevation_neg_inf", _run("--elevation=-inf"), "elevation must be a number of degrees"),
    ("run_elevation_negative_as_option", _run("--elevation", "-inf"), "argument --elevation: expected one argument"),
    ("run_seed_2_32", _run("--seed", 2**32), "seed must be in 0..4294967295, got 4294967296"),
    ("run_video_frames_0", lambda c: ["run", *OK, "--out", c.out, "--video-frames", 0], "video_frames"),
    ("run_video_frames_negative", lambda c: ["run", *OK, "--out", c.out, "--video-frames", -3], "video_frames"),
    ("run_backend_unknown", _run("--backend", "opengl"), "argument --backend: invalid choice: 'opengl'"),
    ("run_steer_number", _run("--steer", "2"), "steer must be one of off, gaussians"),
    ("run_device_cuda_minus_1", _run("--device", "cuda:-1"), "device"),
    # configs (YAML)
    ("run_config_missing", lambda c: ["run", *OK, "--out", c.out, "--config", c.u / "nope.yaml"],
     "nope.yaml: file not found"),
    ("run_config_a_folder", lambda c: ["run", *OK, "--out", c.out, "--config", c.u], "cannot read (Is a directory)"),
    ("run_config_not_yaml", _cfg("views: [1, 2\n"), "app.yaml: not valid YAML"),
    ("run_config_tabs", _cfg("views:\n\t- 4\n"), "app.yaml: not valid YAML"),
    ("run_config_binary", _cfg(bytes(range(128, 256))), "app.yaml: not valid YAML"),
    ("run_config_a_list", _cfg("- views\n- 4\n"), "app.yaml: expected a mapping of fields"),
    ("run_config_a_string", _cfg("views\n"), "app.yaml: expected a mapping of fields"),
    ("run_config_unknown_field", _cfg("viewz: 8\n"), "unknown field(s) ['viewz']"),
    ("run_config_views_text", _cfg("views: eight\n"), "views must be a whole number, got 'eight'"),
    ("run_config_steps_text", _cfg("steps: two\n"), "steps must be a whole number, got 'two'"),
    ("app_config_views_min_text", _app_cfg("views_min: two\n"), "app.yaml: a field has the wrong type"),
    ("app_config_views_min_over_max", _app_cfg("views_min: 12\nviews_max: 6\n"), "views_min/views_max must satisfy"),
    ("app_config_not_yaml", _app_cfg(": : :\n"), "app.yaml: not valid YAML (while parsing"),
    ("app_config_max_queue_yes", _app_cfg("max_queue: yes\n"), "max_queue must be a positive integer, got True"),
    ("run_config_max_queue_0", _cfg("max_queue: 0\n"), "max_queue must be a positive integer, got 0"),
    ("run_config_concurrency_true", _cfg("concurrency_limit: yes\n"),
     "concurrency_limit must be a positive integer, got True"),
    ("run_config_precision_fp64", _cfg("precision: fp64\n"), "precision must be one of auto, bf16, fp32"),
    ("run_config_device_tpu", _cfg("device: tpu\n"), "device"),
    ("run_config_max_upload_mb_nan", _cfg("max_upload_mb: .nan\n"), "max_upload_mb must be a positive number"),
    ("run_config_max_image_size_8", _cfg("max_image_size: 8\n"), "max_image_size must be >= 32"),
    ("run_config_asset_steps_negative", _cfg("asset_steps: -1\n"), "asset_steps must be an integer in"),
    ("run_config_recon_config_missing", _cfg("recon_config: /nonexistent/fit.yaml\n"),
     "recon_config: /nonexistent/fit.yaml not found"),
    ("run_config_recon_config_number", _cfg("recon_config: 5\n"), "recon_config must be the path of a FitConfig"),
    ("run_config_steer_unknown_setting", _cfg("steer: {mode: gaussians, speed: 3}\n"), "steer: unknown setting"),
    ("run_config_int_5000_digits", _cfg("seed: " + "9" * 5000 + "\n"), "app.yaml: not valid YAML"),
    ("run_config_alias_bomb", _cfg(ALIAS_BOMB),
     "views must be a whole number, got [[1, 1, 1, 1, ...], [[1, 1, 1, 1, ...]"),
    ("run_config_python_tag", lambda c: ["run", *OK, "--out", c.out, "--config", c.write(
        "app.yaml", f"views: !!python/object/apply:builtins.open ['{c.u / 'EXECUTED'}', 'w']\n")],
     "app.yaml: not valid YAML"),
    # paths
    ("generate_out_is_a_file", lambda c: ["generate", *OK, "--out", c.u / "sentinel.txt"], "sentinel.txt"),
    ("generate_out_under_a_file", lambda c: ["generate", *OK, "--out", c.u / "sentinel.txt" / "out"], "sentinel.txt"),
    ("generate_out_foreign_folder", lambda c: ["generate", *OK, "--out", c.u], "--out"),
    ("generate_out_dotdot_foreign", lambda c: ["generate", *OK, "--out", c.u / "views" / ".."], "--out"),
    ("generate_out_symlink_to_foreign", lambda c: ["generate", *OK, "--out", c.link("link", c.u / "views")], "--out"),
    ("run_out_is_a_file", lambda c: ["run", *OK, "--out", c.u / "sentinel.txt"], "sentinel.txt"),
    ("run_out_foreign_folder", lambda c: ["run", *OK, "--out", c.u / "views"], "--out"),
    ("run_out_dangling_symlink", lambda c: ["run", *OK, "--out", c.link("link", c.u / "sentinel.txt" / "x")],
     "--out"),
    ("reconstruct_views_missing", lambda c: ["reconstruct", c.u / "nothing", "--out", c.out],
     "no transforms.json or transforms_train.json found"),
    ("reconstruct_views_a_text_file", lambda c: ["reconstruct", c.u / "sentinel.txt", "--out", c.out],
     "sentinel.txt: not valid JSON"),
    ("reconstruct_out_is_the_views", lambda c: ["reconstruct", c.views, "--out", c.views], "--out"),
    ("reconstruct_out_is_a_file", lambda c: ["reconstruct", c.views, "--out", c.u / "sentinel.txt"], "sentinel.txt"),
    ("reconstruct_out_under_a_file", lambda c: ["reconstruct", c.views, "--out", c.u / "sentinel.txt" / "o"],
     "sentinel.txt"),
    ("reconstruct_steps_0", _rec("--steps", 0), "--steps must be positive, got 0"),
    ("reconstruct_steps_text", _rec("--steps", "many"), "argument --steps: invalid int value: 'many'"),
    ("reconstruct_max_gaussians_0", _rec("--max-gaussians", 0), "--max-gaussians must be positive"),
    ("reconstruct_video_frames_0", _rec("--video-frames", 0), "--video-frames must be at least 1, got 0"),
    ("reconstruct_downscale_0", _rec("--downscale", 0), "downscale must be a finite number >= 1"),
    ("reconstruct_downscale_negative", _rec("--downscale", -2), "downscale must be a finite number >= 1"),
    ("reconstruct_seed_negative", _rec("--seed", -1), "seed"),
    ("reconstruct_asset_steps_negative", _rec("--asset-steps", -1), "asset_steps must be an integer in"),
    ("reconstruct_holdout_unknown", _rec("--holdout", "sometimes"), "holdout"),
    ("reconstruct_holdout_every_0", _rec("--holdout", "every-0"), "holdout"),
    ("reconstruct_backend_unknown", _rec("--backend", "vulkan"), "argument --backend: invalid choice: 'vulkan'"),
    ("reconstruct_device_tpu", _rec("--device", "tpu"), "device"),
    ("reconstruct_missing_out", lambda c: ["reconstruct", c.views], "the following arguments are required: --out"),
    # other commands
    ("app_port_0", lambda c: ["app", "--port", 0, "--model", c.u], "--port must be in 1..65535, got 0"),
    ("app_port_negative", lambda c: ["app", "--port", -80, "--model", c.u], "--port must be in 1..65535"),
    ("app_port_text", lambda c: ["app", "--port", "http"], "argument --port: invalid int value: 'http'"),
    ("app_host_empty_name", lambda c: ["app", "--host", "no-such-host.invalid", "--model", c.u],
     "--host 'no-such-host.invalid'"),
    ("dataset_objects_0", lambda c: ["dataset", "--out", c.out, "--objects", 0, "--quiet"], "objects"),
    ("dataset_views_0", lambda c: ["dataset", "--out", c.out, "--objects", 1, "--views", 0, "--quiet"], "views"),
    ("dataset_views_65", lambda c: ["dataset", "--out", c.out, "--objects", 1, "--views", 65, "--quiet"], "views"),
    ("dataset_resolution_huge", lambda c: ["dataset", "--out", c.out, "--objects", 1, "--resolution", 99999,
                                           "--quiet"], "resolution"),
    ("dataset_out_is_a_file", lambda c: ["dataset", "--out", c.u / "sentinel.txt", "--objects", 1, "--quiet"],
     "sentinel.txt"),
    ("dataset_workers_0", lambda c: ["dataset", "--out", c.out, "--objects", 1, "--workers", 0, "--quiet"],
     "workers"),
    ("dataset_elevation_nan", lambda c: ["dataset", "--out", c.out, "--objects", 1, "--elevation", NAN, 20,
                                         "--quiet"], "elevation"),
    ("export_model_src_missing", lambda c: ["export-model", c.u / "nope", c.out], "nope"),
    ("export_model_dst_foreign", lambda c: ["export-model", c.u / "nope", c.u],
     "exists and is not an earlier `mvgen export-model` output"),
    ("train_vae_batch_size_negative", lambda c: ["train-vae", "--data", c.views, "--out", c.out, "--batch-size", -4],
     "batch_size must be at least 1"),
    ("bench_load_clients_0", lambda c: ["bench", "load", "--clients", 0], "--clients must be in 1..1000, got 0"),
    ("bench_load_duration_0", lambda c: ["bench", "load", "--duration", 0],
     "--duration must be a positive number of seconds"),
    ("bench_load_json_a_folder", lambda c: ["bench", "load", "--json", c.u], "is a folder"),
]


@pytest.fixture
def ctx(posed_views, tmp_path):
    import shutil

    u = tmp_path / "user"
    views = shutil.copytree(posed_views, u / "views")

    def write(name, data):
        p = u / name
        p.write_bytes(data) if isinstance(data, bytes) else p.write_text(data)
        return p

    def link(name, target):
        os.symlink(target, u / name)
        return u / name

    c = SimpleNamespace(u=u, out=u / "out", views=views, write=write, link=link)
    return c


@pytest.mark.parametrize("make_argv, match", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_command_line(make_argv, match, ctx, capsys):
    with_sentinel(ctx.u)
    argv = make_argv(ctx)
    before = snapshot(ctx.u)  # the sentinel, the views and the files the case wrote (configs, prompt files)
    line = run_cli(argv, capsys)
    assert match in line, line
    assert len(line) < 600, line
    assert_nothing_lost(ctx.u, before, absent=(ctx.out, ctx.u / "EXECUTED"))


@pytest.mark.parametrize("name", list(MODEL_FOLDERS))
@pytest.mark.parametrize("command", ["generate", "run"])
def test_hostile_model_folder(command, name, tiny_model, tmp_path, capsys):
    """Every bad model folder is one line naming it; a pickle in it is never loaded."""
    folder, match, marker = build_model_folder(name, tiny_model, tmp_path / "models")
    before = with_sentinel(tmp_path)
    out = tmp_path / "out"
    argv = [command, "a red mug", "--out", out, "--model", folder, "--device", "cpu"]
    line = run_cli(argv + (["--views-only", "--views", 2, "--steps", 1] if command == "run" else
                           ["--views", 2, "--steps", 1]), capsys)
    assert match in line and "model" in line, line
    assert not marker.exists(), "a pickle was unpickled"
    assert_nothing_lost(tmp_path, before, absent=(out,))
