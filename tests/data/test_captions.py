"""Caption grammar, vocabulary and the train / held-out split."""

import itertools

import pytest

from mvgen.data import captions as C
from mvgen.data.captions import CaptionError, ObjectSpec, parse_caption


def test_vocabulary_is_large_enough_and_colours_distinct():
    vocab = C.vocabulary()
    assert len(vocab["categories"]) >= 12 and len(vocab["colors"]) >= 10
    assert set(vocab["sizes"]) >= {"tall", "short", "wide"}
    assert set(vocab["parts"]) == set(C.CATEGORIES)
    for rgb in C.COLORS.values():
        assert len(rgb) == 3 and all(0.0 <= c <= 1.0 for c in rgb)
    for (a, ra), (b, rb) in itertools.combinations(C.COLORS.items(), 2):
        assert max(abs(x - y) for x, y in zip(ra, rb)) > 0.2, (a, b)


def test_parse_caption_round_trip_for_every_spec():
    specs = C.all_specs()
    assert len(specs) == len(set(specs))
    captions = [s.caption() for s in specs]
    assert len(set(captions)) == len(captions)
    assert len({s.slug() for s in specs}) == len(specs)
    for spec, text in zip(specs, captions):
        assert parse_caption(text) == spec


@pytest.mark.parametrize("text, expected", [
    ("a red chair with white legs", ObjectSpec("chair", "red", "white")),
    ("  A Red   CHAIR with White LEGS. ", ObjectSpec("chair", "red", "white")),
    ("a tall blue vase", ObjectSpec("vase", "blue", None, "tall")),
    ("red mug", ObjectSpec("mug", "red")),
    ("the grey car with a black wheel", ObjectSpec("car", "gray", "black")),
    ("an orange mug with a white handle", ObjectSpec("mug", "orange", "white")),
    ("blue wide sofa", ObjectSpec("sofa", "blue", None, "wide")),
])
def test_parse_caption_is_tolerant(text, expected):
    assert parse_caption(text) == expected


@pytest.mark.parametrize("text, word", [
    ("a magenta chair", "magenta"),
    ("a red spaceship", "spaceship"),
    ("a red chair with white handle", "handle"),
    ("a red chair with shiny legs", "shiny"),
    ("a huge red chair", "huge"),
    ("a red", "category"),
    ("a chair", "colour"),
    ("", "empty"),
    ("a red chair blue", "blue"),
])
def test_bad_captions_raise_naming_the_problem(text, word):
    with pytest.raises(CaptionError, match=word):
        parse_caption(text)
    assert issubclass(CaptionError, ValueError)


def test_spec_validates_fields():
    with pytest.raises(CaptionError, match="teapot"):
        ObjectSpec("teapot", "red")
    with pytest.raises(CaptionError, match="mauve"):
        ObjectSpec("mug", "red", "mauve")


def test_default_part_colour_is_not_listed_twice():
    specs = set(C.all_specs())
    assert ObjectSpec("car", "red") in specs and ObjectSpec("car", "red", "black") not in specs  # wheels black
    assert ObjectSpec("chair", "red", "red") not in specs and ObjectSpec("chair", "red", "white") in specs


def test_split_holds_out_whole_pairs_and_keeps_every_word_in_train():
    held = C.heldout_pairs()
    n_pairs = len(C.COLORS) * len(C.CATEGORIES)
    assert len(held) == round(C.HELDOUT_FRACTION * n_pairs)
    train = [s for s in C.all_specs() if C.split_of(s) == "train"]
    heldout = [s for s in C.all_specs() if C.split_of(s) == "heldout"]
    assert not {(s.color, s.category) for s in train} & held
    assert {(s.color, s.category) for s in heldout} == held
    assert {s.color for s in train} == set(C.COLORS) and {s.category for s in train} == set(C.CATEGORIES)
    assert {k for _, k in held} == set(C.CATEGORIES)  # every category can be evaluated on unseen colours
    # split depends only on (colour, category), not on size or part colour
    assert C.split_of(ObjectSpec("mug", "red", "white", "tall")) == C.split_of(ObjectSpec("mug", "red"))


def test_example_captions_and_sampling_are_deterministic():
    a = C.example_captions("heldout", 5, seed=3)
    assert a == C.example_captions("heldout", 5, seed=3) and len(set(a)) == 5
    assert all(C.split_of(parse_caption(t)) == "heldout" for t in a)
    assert C.example_captions("train", 5, seed=4) != C.example_captions("train", 5, seed=5)
    with pytest.raises(ValueError, match="split"):
        C.example_captions("test", 2)
    # a larger sample extends a smaller one with the same seed (datasets can grow)
    assert C.sample_specs(10, seed=7)[:4] == C.sample_specs(4, seed=7)
    with pytest.raises(ValueError, match="objects"):
        C.sample_specs(0)
