"""Several elevation rings through the job (settings, `mvgen run` / `mvgen generate`, the Python API, `mvgen run
--prompts`' key): the views reach the pipeline at per-view elevations taken in pairs from ring to ring, the
manifest records the rings and every view's elevation, and bad rings are named before the model loads."""

import json

import pytest
import yaml

from mvgen.cli import main
from mvgen.settings import AppConfig, check_rings, check_run_settings, pick_rings

BAD_RINGS = [("a", "rings must be elevations in degrees separated by commas (e.g. 10,30), got 'a'"),
             ("10,95", "rings must be elevations in degrees, each in [-60, 60], got 95.0"),
             ("10,30,40", "rings: 3 rings need at least 6 views (2 per ring), got 4 views"),
             ("0,10,20,30,40", "rings must be 1 to 4 elevations, got 5")]


def test_settings_take_rings_and_name_bad_ones():
    cfg = AppConfig()
    assert cfg.rings is None and check_run_settings(cfg, 8, 20, 20, 3.0, 0, 400)["rings"] is None
    assert check_run_settings(cfg, 8, 20, 20, 3.0, 0, 400, rings=" 10, 30 ")["rings"] == (10.0, 30.0)
    assert check_run_settings(cfg, 8, 20, 20, 3.0, 0, 400, rings=[10, 30.5])["rings"] == (10.0, 30.5)
    ringed = AppConfig(rings="10,30")  # YAML reads `rings: 10,30` as text
    assert ringed.rings == (10.0, 30.0) == AppConfig(rings=[10, 30]).rings
    assert check_run_settings(ringed, 8, 20, 20, 3.0, 0, 400)["rings"] == (10.0, 30.0)  # None: the config's
    assert check_run_settings(ringed, 8, 20, 20, 3.0, 0, 400, rings="")["rings"] is None  # "": one ring
    assert check_run_settings(ringed, 8, 20, 20, 3.0, 0, 400, rings=())["rings"] is None
    for value, match in BAD_RINGS:
        with pytest.raises(ValueError) as e:
            check_run_settings(cfg, 4, 20, 20, 3.0, 0, 400, rings=value)
        assert str(e.value) == match
    for bad in (20, True, [10, "30"], [10, float("nan")], [[10]], {"a": 1}):
        with pytest.raises(ValueError, match="^rings must be"):
            check_rings(bad)
    with pytest.raises(ValueError, match=r"rings: 2 rings need at least 4 views \(2 per ring\), got 2 views"):
        AppConfig(rings=[10, 30], views=2, views_min=2)
    with pytest.raises(ValueError, match="rings must be elevations in degrees, each in"):
        AppConfig(rings=[-70])
    shipped = AppConfig.from_yaml(views_min=2)  # configs/app.yaml asks for rings 10 and 30 by default
    assert shipped.rings == (10.0, 30.0)
    assert check_run_settings(shipped, 16, 20, 20, 3.0, 0, 400)["rings"] == (10.0, 30.0)
    assert check_run_settings(shipped, 4, 20, 20, 3.0, 0, 400)["rings"] == (10.0, 30.0)
    assert check_run_settings(shipped, 3, 20, 20, 3.0, 0, 400)["rings"] is None  # too few views for the default
    with pytest.raises(ValueError, match="rings: 2 rings need at least 4 views"):  # ... but not when asked for
        check_run_settings(shipped, 3, 20, 20, 3.0, 0, 400, rings="10,30")
    assert pick_rings(None, None) is None and pick_rings(25, None) == "" and pick_rings(None, "10,30") == "10,30"
    with pytest.raises(ValueError, match=r"^give --elevation \(one ring\) or --rings \(several elevations\), not"):
        pick_rings(20, "10,30", ("--elevation", "--rings"))


def test_config_with_rings_round_trips_and_changes_the_batch_key(tmp_path):
    from mvgen.batch import batch_key

    cfg = AppConfig(rings=[10, 30])
    path = tmp_path / "app.yaml"
    path.write_text(json.dumps(cfg.to_dict()))  # JSON is YAML
    assert AppConfig.from_yaml(path) == cfg
    one = check_run_settings(cfg, 8, 20, 20, 3.0, 0, 400, rings="")
    two = check_run_settings(cfg, 8, 20, 20, 3.0, 0, 400)
    assert batch_key(one, cfg, None, False) != batch_key(two, cfg, None, False)
    assert batch_key(two, cfg, None, False)["settings"]["rings"] == [10.0, 30.0]


def test_run_prompt_generates_on_the_rings_and_scores_every_ring(tiny_model, fast_config, tmp_path, monkeypatch):
    from mvgen.job import load_model, run_prompt
    from mvgen.pipeline import PTDiTMultiViewPipeline

    pipe, path = load_model(tiny_model, "cpu")
    seen = []
    call = PTDiTMultiViewPipeline.__call__

    def spy(self, *args, **kwargs):
        seen.append(kwargs["elevation"])
        return call(self, *args, **kwargs)

    monkeypatch.setattr(PTDiTMultiViewPipeline, "__call__", spy)
    settings = check_run_settings(fast_config, 4, 20, 1, 3.0, 0, 20, rings="10,30")
    result = run_prompt(pipe, "a red mug", tmp_path / "r", fast_config, settings, path)
    assert seen == [[10.0, 10.0, 30.0, 30.0]]
    m = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert m == result.manifest and m["rings"] == [10.0, 30.0] and m["elevation"] is None
    assert m["elevations_deg"] == [10.0, 10.0, 30.0, 30.0] and len(m["azimuths_deg"]) == 4
    assert [e for _, e in result.metrics["view_angles"]] == [10.0, 30.0]  # the held-out views: one per ring
    assert [c.split("el ")[1] for _, c in result.views] == ["10°", "10°", "30°", "30°"]
    one = run_prompt(pipe, "a red mug", tmp_path / "one", fast_config,
                     check_run_settings(fast_config, 4, 25, 1, 3.0, 0, 20), path, stop_after_views=True)
    assert seen[-1] == 25.0 and one.manifest["rings"] is None and one.manifest["elevation"] == 25.0
    assert one.manifest["elevations_deg"] == [25.0] * 4


def _config_file(fast_config, tmp_path, **fields):
    path = tmp_path / "app.yaml"
    path.write_text(yaml.safe_dump({**fast_config.to_dict(), "with_lpips": False, **fields}))
    return path


def test_run_command_rings_and_bad_rings_before_loading(tiny_model, fast_config, tmp_path, capsys):
    config = _config_file(fast_config, tmp_path)
    common = ["--model", str(tiny_model), "--config", str(config), "--steps", "1", "--views-only"]
    for extra, match in [(["--rings", v], m) for v, m in BAD_RINGS] + [
            (["--rings", "10,30", "--views", "2"], "rings: 2 rings need at least 4 views (2 per ring), got 2 views"),
            (["--rings", "10,30", "--elevation", "20"],
             "give --elevation (one ring) or --rings (several elevations), not both")]:
        capsys.readouterr()
        args = ["--views", "4", *extra] if "--views" not in extra else extra
        assert main(["run", "a red mug", "--out", str(tmp_path / "o"), *common, *args]) == 2
        err = capsys.readouterr().err.strip()
        assert err == f"mvgen run: error: {match}", err
    assert not (tmp_path / "o").exists()
    assert main(["run", "a red mug", "--out", str(tmp_path / "r"), *common, "--views", "4", "--rings", "10,30"]) == 0
    m = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert m["rings"] == [10.0, 30.0] and m["elevations_deg"] == [10.0, 10.0, 30.0, 30.0]
    # the config's rings apply by default; --elevation asks for one ring
    ringed = ["--config", str(_config_file(fast_config, tmp_path, rings=[15, 35], views=4))]
    assert main(["run", "a red mug", "--out", str(tmp_path / "c"), *common, *ringed]) == 0
    assert json.loads((tmp_path / "c" / "manifest.json").read_text())["elevations_deg"] == [15.0, 15.0, 35.0, 35.0]
    assert main(["run", "a red mug", "--out", str(tmp_path / "e"), *common, *ringed, "--elevation", "5"]) == 0
    m = json.loads((tmp_path / "e" / "manifest.json").read_text())
    assert m["rings"] is None and m["elevations_deg"] == [5.0] * 4


def test_generate_command_rings_and_bad_rings_before_loading(tiny_model, tmp_path, capsys):
    common = ["--model", str(tiny_model), "--steps", "1", "--views", "4"]
    cams = tmp_path / "cams.json"
    for extra, match in [(["--rings", v], m) for v, m in BAD_RINGS] + [
            (["--rings", "10,30", "--elevation", "20"],
             "give --elevation (one ring) or --rings (several elevations), not both"),
            (["--rings", "10,30", "--cameras", str(cams)],
             "give --cameras or --rings, not both (the cameras fix every view's elevation)")]:
        capsys.readouterr()
        assert main(["generate", "a red mug", "--out", str(tmp_path / "o"), *common, *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert err == f"mvgen generate: error: {match}", err
    assert not (tmp_path / "o").exists()
    assert main(["generate", "a red mug", "--out", str(tmp_path / "g"), *common, "--rings", "10,30"]) == 0
    m = json.loads((tmp_path / "g" / "manifest.json").read_text())
    assert m["rings"] == [10.0, 30.0] and m["elevations_deg"] == [10.0, 10.0, 30.0, 30.0]
    assert main(["generate", "a red mug", "--out", str(tmp_path / "d"), *common]) == 0  # configs/app.yaml: 10, 30
    m = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert m["rings"] == [10.0, 30.0] and m["elevations_deg"] == [10.0, 10.0, 30.0, 30.0]
    assert main(["generate", "a red mug", "--out", str(tmp_path / "n"), *common, "--rings", "none"]) == 0
    m = json.loads((tmp_path / "n" / "manifest.json").read_text())
    assert m["rings"] is None and m["elevation"] == 20.0 and m["elevations_deg"] == [20.0] * 4


def test_python_api_rings(tiny_model, fast_config, tmp_path):
    from mvgen import load_generator, text_to_3d
    from mvgen.cameras import orbit

    config = _config_file(fast_config, tmp_path)
    gen = load_generator(tiny_model, "cpu", config)
    views = gen("a red mug", views=4, steps=1, rings=(10, 30))
    assert views.manifest["rings"] == [10.0, 30.0] and views.manifest["elevations_deg"] == [10.0, 10.0, 30.0, 30.0]
    assert gen("a red mug", views=4, steps=1, rings="").manifest["elevations_deg"] == [20.0] * 4
    for kwargs, match in [({"rings": "a"}, "rings must be elevations in degrees separated by commas"),
                          ({"rings": "10,95"}, r"rings must be elevations in degrees, each in \[-60, 60\], got 95"),
                          ({"rings": "10,30", "views": 2}, "rings: 2 rings need at least 4 views"),
                          ({"rings": "10,30", "elevation": 20}, r"give elevation \(one ring\) or rings"),
                          ({"rings": "10,30", "cameras": orbit(4, width=32)}, "rings: give cameras or rings")]:
        with pytest.raises(ValueError, match=match):
            gen("a red mug", **{"views": 4, "steps": 1, **kwargs})
    with pytest.raises(ValueError, match="rings: 2 rings need at least 4 views"):
        text_to_3d("a red mug", tmp_path / "t", views=2, steps=1, generator=gen, views_only=True, rings="10,30")
    result = text_to_3d("a red mug", tmp_path / "t", views=4, steps=1, generator=gen, views_only=True, rings="5,25")
    assert result.manifest["elevations_deg"] == [5.0, 5.0, 25.0, 25.0]
