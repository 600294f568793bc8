"""Part-colour guidance: which prompts get a contrast prompt, and what the views' manifest records."""

import pytest

from mvgen.generate import part_contrast, sample_views


def test_part_contrast_only_for_prompts_with_a_part_colour():
    assert part_contrast("a red chair with white legs", 2.0) == {"contrast_prompt": "a red chair",
                                                                 "contrast_scale": 2.0}
    assert part_contrast("a photo of a chair in red, its legs white", 1.5) == {
        "contrast_prompt": "a photo of a chair in red", "contrast_scale": 1.5}
    assert part_contrast("a red chair with white legs", 0.0) == {}  # off
    assert part_contrast("a red mug", 2.0) == {}  # nothing to contrast: no extra pass
    assert part_contrast(["a red chair with white legs", "a blue car with black wheels"], 2.0)["contrast_prompt"] == [
        "a red chair", "a blue car"]
    assert part_contrast(["a red chair with white legs", "a red mug"], 2.0) == {}  # all or none in one batch


@pytest.mark.parametrize("bad", [-1.0, 21.0, float("nan"), "2"])
def test_part_contrast_refuses_bad_scales(bad):
    with pytest.raises(ValueError, match="part_guidance"):
        part_contrast("a red chair with white legs", bad)


def test_manifest_records_the_contrast(tiny_pipeline):
    _, _, with_part = sample_views(tiny_pipeline, "a red chair with white legs", views=2, steps=1, part_guidance=2.0)
    assert with_part["part_guidance"] == 2.0 and with_part["contrast_prompt"] == "a red chair"
    _, _, plain = sample_views(tiny_pipeline, "a red mug", views=2, steps=1, part_guidance=2.0)
    assert plain["part_guidance"] == 0.0 and plain["contrast_prompt"] is None
