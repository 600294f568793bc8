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


def test_without_part_colour_on_every_canonical_caption():
    """Canonical captions lose exactly their "with ..." clause; captions without a part colour have none."""
    from dataclasses import replace

    for spec in C.all_specs():
        got = W.without_part_colour(spec.caption())
        if spec.part_color is None:
            assert got is None, spec.caption()
        else:
            assert got == replace(spec, part_color=None).caption(), spec.caption()


def _part_words() -> set[str]:
    return {w for ws in W.PART_SYNONYMS.values() for w in ws}


@pytest.mark.parametrize("synonyms", [False, True])
def test_without_part_colour_on_free_wording(synonyms):
    """Every word order and synonym ``paraphrase`` writes: the part word and the part colour go, the object's
    colour and category stay, the filler words around them stay."""
    import re

    rng = random.Random(7)
    specs = [s for s in C.all_specs() if s.part_color is not None]
    for spec in rng.sample(specs, 300):
        prompt = W.paraphrase(spec, rng, synonyms=synonyms, fillers=True, reorder=True)
        got = W.without_part_colour(prompt)
        assert got is not None and len(got) < len(prompt), prompt
        words = set(re.findall(r"[a-z]+", got.lower()))
        assert not any(set(p.split()) <= words for p in _part_words()), (prompt, got)
        if not synonyms:
            assert spec.color in words and spec.category in words, (prompt, got)
            fill = {s.strip(" ,") for s in W.SUFFIXES + W.PREFIXES if s.strip() and s.strip(" ,") in prompt}
            assert all(f in got for f in fill), (prompt, got)
            if spec.part_color not in ("white",) and spec.part_color != spec.color:
                assert spec.part_color not in words, (prompt, got)


def test_without_part_colour_leaves_other_prompts_alone():
    for prompt in ["a red mug", "a photo of a blue vase", "a tall green bookshelf", "a chair", "with"]:
        assert W.without_part_colour(prompt) is None
