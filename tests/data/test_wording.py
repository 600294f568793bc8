"""Free wording: paraphrases name the same object, synonyms are unambiguous, the benchmark's families."""

import random

import pytest

from mvgen.data import captions as C
from mvgen.data import wording as W
from mvgen.data.captions import ObjectSpec


@pytest.mark.parametrize("table, canon", [(W.COLOR_SYNONYMS, C.COLORS), (W.CATEGORY_SYNONYMS, C.CATEGORIES),
                                          (W.SIZE_SYNONYMS, C.SIZES)])
def test_every_word_has_synonyms_starting_with_itself_and_none_names_another(table, canon):
    assert set(table) == set(canon)
    owner = {}
    for word, options in table.items():
        assert options[0] == word
        for o in options:
            assert owner.setdefault(o, word) == word, f"{o!r} names both {owner[o]!r} and {word!r}"
            others = set(o.replace("-", " ").split()) & (set(canon) - {word})
            assert not others, f"{o!r} (for {word!r}) contains {others}"


def test_part_synonyms_cover_every_part_and_start_with_it():
    assert set(W.PART_SYNONYMS) == set(C.PARTS.values())
    assert all(options[0] == part for part, options in W.PART_SYNONYMS.items())


def test_canonical_wording_parses_back_and_free_wording_is_seeded():
    spec = ObjectSpec("chair", "red", "white", "tall")
    plain = W.paraphrase(spec, random.Random(0), synonyms=False, fillers=False, reorder=False)
    assert C.parse_caption(plain) == spec
    a = [W.paraphrase(spec, random.Random(3)) for _ in range(2)]
    assert a[0] == a[1]
    many = {W.paraphrase(spec, random.Random(s)) for s in range(200)}
    assert len(many) > 50  # really varied


def test_free_wording_keeps_the_colours_and_the_category():
    rng = random.Random(1)
    for spec in random.Random(0).sample(C.all_specs(), 60):
        text = W.paraphrase(spec, rng)
        assert any(s in text for s in W.CATEGORY_SYNONYMS[spec.category]), text
        assert any(s in text for s in W.COLOR_SYNONYMS[spec.color]), text
        if spec.part_color:
            assert any(s in text for s in W.PART_SYNONYMS[spec.part]), text


def test_benchmark_prompts_cover_each_family_and_differ_from_the_caption():
    specs = [ObjectSpec("mug", "orange", "white"), ObjectSpec("vase", "blue", None, "tall")]
    rows = W.wording_benchmark_prompts(specs, per_family=2, seed=0)
    assert len(rows) == len(specs) * len(W.FAMILIES) * 2
    for r in rows:
        if r["family"] == "canonical":
            assert r["prompt"] == r["spec"].caption()
        else:
            assert r["prompt"] != r["spec"].caption()
