"""The job's settings (mvgen/settings.py): one YAML -> one dataclass, each run's settings checked against the ranges
of mvgen/limits.py, and 3D-consistent sampling as a setting."""

import pytest

from mvgen import limits
from mvgen.sampling3d import SteerSettings
from mvgen.settings import CLI_RANGES, AppConfig, check_prompt, check_run_settings, steer_settings


def test_settings_validation_names_the_field():
    cfg = AppConfig.from_yaml()
    ok = check_run_settings(cfg, 8.0, 20, 20, 3, 7, 1500)
    assert ok["views"] == 8 and isinstance(ok["views"], int)
    for args, field in [((3, 20, 20, 3, 0, 10), "views"), ((8, float("nan"), 20, 3, 0, 10), "elevation"),
                        ((8, 20, 0, 3, 0, 10), "steps"), ((8, 20, 20, -1, 0, 10), "guidance"),
                        ((8, 20, 20, 3, 1.5, 10), "seed"), ((8, 20, 20, 3, 0, 10**6), "recon_steps"),
                        ((True, 20, 20, 3, 0, 10), "views")]:
        with pytest.raises(ValueError, match=field):
            check_run_settings(cfg, *args)
    for bad in ("", "   ", None, "x" * 301):
        with pytest.raises(ValueError, match="prompt"):
            check_prompt(bad)
    assert check_prompt("  a   red mug ") == "a red mug"
    with pytest.raises(ValueError, match="unknown field"):
        AppConfig.from_yaml(colour="red")
    with pytest.raises(ValueError, match="views_min"):
        AppConfig(views_min=10, views_max=4)


def test_the_shipped_config_reads_steer_off_and_the_cli_takes_the_full_ranges():
    cfg = AppConfig.from_yaml()  # configs/app.yaml says `steer: off`, which YAML reads as false
    assert cfg.steer == SteerSettings(mode="off")
    wide = AppConfig.from_yaml(**CLI_RANGES)
    assert (wide.views_min, wide.views_max) == (limits.RUN_VIEWS.low, limits.RUN_VIEWS.high)
    assert wide.steps_max == limits.STEPS.high and wide.recon_steps_max == limits.FIT_STEPS.high
    with pytest.raises(ValueError, match="views_min/views_max must satisfy 2 <= min <= max <= 32"):
        AppConfig(views_max=33)
    with pytest.raises(ValueError, match="steps_max"):
        AppConfig(steps_max=limits.STEPS.high + 1)


@pytest.mark.parametrize("value, mode", [(None, "off"), (False, "off"), (True, "gaussians"), ("gaussians", "gaussians"),
                                         ("off", "off"), ({"mode": "gaussians", "strength": 0.5}, "gaussians")])
def test_steer_from_a_flag_a_checkbox_or_a_mapping(value, mode):
    cfg = AppConfig.from_yaml()
    steer = check_run_settings(cfg, 8, 20, 20, 3.0, 0, 400, value)["steer"]
    assert isinstance(steer, SteerSettings) and steer.mode == mode and steer.at == cfg.steer.at
    assert AppConfig(steer=value if value is not None else "off").steer.mode == mode


@pytest.mark.parametrize("bad, match", [("nerf", "steer must be one of off, gaussians"), (1.5, "steer must be"),
                                        ({"colour": 1}, "steer: unknown setting"), ({"strength": 3}, "strength")])
def test_bad_steer_names_the_field(bad, match):
    with pytest.raises(ValueError, match=match):
        steer_settings(bad)
    with pytest.raises(ValueError, match="steer"):
        AppConfig(steer=bad)


def test_config_round_trips_through_a_file(tmp_path):
    import json

    cfg = AppConfig(steer="gaussians", views=6)
    path = tmp_path / "app.yaml"
    path.write_text(json.dumps(cfg.to_dict()))  # JSON is YAML
    assert AppConfig.from_yaml(path) == cfg


def test_every_sampler_defaults_to_the_measured_guidance():
    import inspect

    from mvgen.cli import build_parser
    from mvgen.pipeline import PTDiTMultiViewPipeline

    assert AppConfig.from_yaml().guidance == AppConfig().guidance == limits.DEFAULT_GUIDANCE
    assert inspect.signature(PTDiTMultiViewPipeline.__call__).parameters["guidance_scale"].default == limits.DEFAULT_GUIDANCE
    parser = build_parser()
    for argv in (["generate", "a red mug", "--out", "g"], ["evaluate", "generation"], ["evaluate", "attributes"],
                 ["evaluate", "wording"], ["evaluate", "asset"]):
        assert parser.parse_args(argv).guidance == limits.DEFAULT_GUIDANCE, argv


def test_every_sampler_defaults_to_the_measured_part_guidance():
    import inspect

    from mvgen.cli import build_parser
    from mvgen.generate import sample_views

    assert AppConfig.from_yaml().part_guidance == AppConfig().part_guidance == limits.DEFAULT_PART_GUIDANCE
    assert inspect.signature(sample_views).parameters["part_guidance"].default == limits.DEFAULT_PART_GUIDANCE
    parser = build_parser()
    for argv in (["generate", "a red mug", "--out", "g"], ["evaluate", "generation"], ["evaluate", "attributes"],
                 ["evaluate", "wording"], ["evaluate", "asset"]):
        assert parser.parse_args(argv).part_guidance == limits.DEFAULT_PART_GUIDANCE, argv
    assert parser.parse_args(["run", "a red mug", "--out", "r"]).part_guidance is None  # None: the config's
