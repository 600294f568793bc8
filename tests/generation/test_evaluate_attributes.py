"""Attribute accuracy and the wording benchmark: rivals differ in one attribute, an oracle is always right."""

from types import SimpleNamespace

import pytest

from mvgen.cameras import orbit
from mvgen.data.captions import ObjectSpec, parse_caption
from mvgen.evaluate import render_truth
from mvgen.evaluate_attributes import (accuracy, attribute_rows, nearest, rivals, score_prompts, table,
                                       wording_rows)
from mvgen.metrics import get_lpips


def test_rivals_differ_in_exactly_one_attribute():
    spec = ObjectSpec("chair", "red", "white", "tall")
    for attribute, n in (("color", 12), ("part_color", 12), ("category", 20)):
        r = rivals(spec, attribute)
        assert r[0] == spec and len(r) == n and len(set(r)) == n
        for other in r[1:]:
            assert other.size == "tall" and getattr(other, attribute) != getattr(spec, attribute) or \
                attribute == "category"
    with pytest.raises(ValueError, match="part colour"):
        rivals(ObjectSpec("mug", "red"), "part_color")
    with pytest.raises(ValueError, match="attribute"):
        rivals(spec, "size")


@pytest.mark.parametrize("attribute", ["color", "part_color", "category"])
def test_ground_truth_views_are_nearest_to_their_own_object(attribute):
    spec = ObjectSpec("mug", "orange", "blue")
    cams = orbit(3, 25.0, width=32)
    assert nearest(render_truth(spec.caption(), cams), spec, attribute, cams, get_lpips()) == spec
    wrong = rivals(spec, attribute)[3]
    assert nearest(render_truth(wrong.caption(), cams), spec, attribute, cams, get_lpips()) == wrong


class Oracle:
    """Reads the typed prompt's intended object from a lookup and renders its ground truth."""

    image_size = 32

    def __init__(self, meaning):
        self.meaning = meaning

    def __call__(self, prompt, cameras, **kw):
        return SimpleNamespace(images=render_truth(self.meaning[prompt], cameras)[None])


def test_wording_benchmark_with_an_oracle_scores_every_family_fully():
    specs = [parse_caption("a tall red chair with white legs"), parse_caption("a blue vase")]
    rows = wording_rows(specs, seed=0)
    assert {r["family"] for r in rows} == {"color", "category", "part_color", "filler_order"}
    assert sum(r["family"] == "part_color" for r in rows) == 1  # the vase names no part colour
    assert all(r["prompt"] != r["spec"].caption() for r in rows if r["family"] != "filler_order")
    scored = score_prompts(Oracle({r["prompt"]: r["spec"].caption() for r in rows}), rows, views=2, steps=1)
    acc = accuracy(scored)
    assert all(v == 1.0 for by in acc.values() for v in by.values()), acc
    assert "| color | 100% |" in table(acc, "wording")
    canon = attribute_rows(specs)
    assert canon[0]["attributes"] == ["color", "part_color", "category"] and "part_color" not in canon[1]["attributes"]
