"""Caption grammar, vocabulary and the train / held-out split of the procedural object set.

Grammar (case, extra whitespace, articles and a trailing full stop are ignored when parsing)::

    caption := [article] [size] colour category [ "with" [article] colour part ]
    article := "a" | "an" | "the"
    size    := "tall" | "short" | "wide"
    colour  := one of COLORS ("grey" is read as "gray")
    part    := the part word of the category (PARTS; singular/plural both accepted, e.g. "leg"/"legs")

Examples: "a red chair with white legs", "a tall blue vase", "red mug", "an orange car with black wheels".
Without a part colour the part takes the category default (DEFAULT_PART_COLOR: car wheels black, tree trunk
brown, ... or the main colour); a caption naming exactly the default is the same object and is not listed again
by ``all_specs``. The main colour is the colour of the object's identity part (a mushroom's cap, a donut's icing,
a dumbbell's weights), the part word names the secondary part (PARTS).
``ObjectSpec.caption()`` writes the canonical form ("a tall blue vase with a white stripe"), and
``parse_caption(spec.caption()) == spec`` for every spec. Each caption names exactly one object
(``mvgen.data.objects.build_mesh``), so every caption has ground-truth views at any camera.

Split: a fixed ~10 % of (colour, category) pairs is held out for evaluating generalisation; all captions of a
held-out pair (any size or part colour) are "heldout", everything else is "train". The choice uses a stable
hash (sha256), so it is the same on every machine and run, and every colour and every category keeps pairs in
train.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from functools import lru_cache

# Categories in a fixed order (order matters for all_specs and the split; append new ones at the end).
CATEGORIES: list[str] = [
    "mug", "vase", "bottle", "bowl", "table", "chair", "stool", "lamp", "sofa", "bookshelf",
    "car", "house", "tree", "mushroom", "snowman", "rocket", "donut", "cake", "trophy", "dumbbell",
]

# Named colours, sRGB floats in [0, 1]; chosen to stay distinct from each other after shading.
COLORS: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.12, 0.10),
    "orange": (0.98, 0.50, 0.05),
    "yellow": (0.98, 0.85, 0.10),
    "green": (0.15, 0.65, 0.20),
    "teal": (0.00, 0.55, 0.55),
    "blue": (0.10, 0.30, 0.85),
    "purple": (0.50, 0.20, 0.70),
    "pink": (0.98, 0.55, 0.72),
    "brown": (0.50, 0.30, 0.14),
    "black": (0.10, 0.10, 0.10),
    "white": (0.90, 0.90, 0.88),  # not pure white: lit white surfaces stay visible on a white background
    "gray": (0.55, 0.55, 0.55),
}
COLOR_ALIASES = {"grey": "gray"}

# Size words and the (width, height) factors objects.py applies before normalising to the unit sphere.
SIZES: dict[str, tuple[float, float]] = {"tall": (1.0, 1.45), "short": (1.0, 0.65), "wide": (1.45, 1.0)}

# The part a second colour applies to, per category, and whether the canonical caption uses "a" before it.
PARTS: dict[str, str] = {
    "mug": "handle", "vase": "stripe", "bottle": "cap", "bowl": "rim", "table": "legs", "chair": "legs",
    "stool": "legs", "lamp": "shade", "sofa": "cushions", "bookshelf": "books", "car": "wheels",
    "house": "roof", "tree": "trunk", "mushroom": "stem", "snowman": "hat", "rocket": "fins",
    "donut": "sprinkles", "cake": "frosting", "trophy": "base", "dumbbell": "handle",
}
_COUNTABLE_SINGULAR = {"handle", "stripe", "cap", "rim", "shade", "roof", "trunk", "stem", "hat", "base"}

# Colour of the part when the caption names none: "same" = the object's colour, else a colour name.
DEFAULT_PART_COLOR: dict[str, str] = {
    "mug": "same", "vase": "white", "bottle": "white", "bowl": "same", "table": "same", "chair": "same",
    "stool": "same", "lamp": "white", "sofa": "same", "bookshelf": "white", "car": "black", "house": "brown",
    "tree": "brown", "mushroom": "white", "snowman": "black", "rocket": "same", "donut": "white",
    "cake": "white", "trophy": "black", "dumbbell": "gray",
}

ARTICLES = {"a", "an", "the"}
HELDOUT_FRACTION = 0.10
SPLITS = ("train", "heldout")


class CaptionError(ValueError):
    """A caption does not follow the grammar; the message names the offending word."""


@dataclass(frozen=True)
class ObjectSpec:
    """One procedural object: category, main colour, optional part colour and size word."""

    category: str
    color: str
    part_color: str | None = None
    size: str | None = None

    def __post_init__(self):
        if self.category not in CATEGORIES:
            raise CaptionError(f"unknown category {self.category!r}; known: {', '.join(CATEGORIES)}")
        for field, value in (("color", self.color), ("part_color", self.part_color)):
            if value is not None and value not in COLORS:
                raise CaptionError(f"unknown {field} {value!r}; known: {', '.join(COLORS)}")
        if self.color is None:
            raise CaptionError("color is required")
        if self.size is not None and self.size not in SIZES:
            raise CaptionError(f"unknown size {self.size!r}; known: {', '.join(SIZES)}")

    @property
    def part(self) -> str:
        """The part word of this category ("legs", "handle", ...)."""
        return PARTS[self.category]

    @property
    def effective_part_color(self) -> str:
        """The colour name the part is drawn in (the caption's, else the category default)."""
        if self.part_color is not None:
            return self.part_color
        default = DEFAULT_PART_COLOR[self.category]
        return self.color if default == "same" else default

    def caption(self) -> str:
        """Canonical caption, e.g. "a tall blue vase with a white stripe"."""
        words = [w for w in (self.size, self.color, self.category) if w]
        text = f"{_article(words[0])} {' '.join(words)}"
        if self.part_color is not None:
            part_article = f"{_article(self.part_color)} " if self.part in _COUNTABLE_SINGULAR else ""
            text += f" with {part_article}{self.part_color} {self.part}"
        return text

    def slug(self) -> str:
        """Filesystem-safe id, e.g. "tall_blue_vase_with_white_stripe"."""
        words = [w for w in (self.size, self.color, self.category) if w]
        if self.part_color is not None:
            words += ["with", self.part_color, self.part]
        return "_".join(words)


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _singular(word: str) -> str:
    return word[:-1] if word.endswith("s") and not word.endswith("ss") else word


def parse_caption(text: str) -> ObjectSpec:
    """Parse a caption of the grammar above into an ObjectSpec; raises CaptionError naming the bad word."""
    if not isinstance(text, str):
        raise CaptionError(f"caption must be a string, got {type(text).__name__}")
    words = [w for w in re.split(r"\s+", text.strip().lower().rstrip(".!")) if w and w not in ARTICLES]
    if not words:
        raise CaptionError("caption is empty")
    if words.count("with") > 1:
        raise CaptionError("caption has more than one 'with' clause")
    head, tail = (words[: words.index("with")], words[words.index("with") + 1:]) if "with" in words else (words, None)
    size = color = category = None
    for w in head:
        w = COLOR_ALIASES.get(w, w)
        if category is not None:
            raise CaptionError(f"unexpected word {w!r} after the category {category!r}")
        if w in SIZES:
            if size is not None:
                raise CaptionError(f"two size words: {size!r} and {w!r}")
            size = w
        elif w in COLORS:
            if color is not None:
                raise CaptionError(f"two colours: {color!r} and {w!r} (a part colour goes after 'with')")
            color = w
        elif w in CATEGORIES:
            category = w
        else:
            raise CaptionError(f"unknown word {w!r}; sizes: {', '.join(SIZES)}; colours: {', '.join(COLORS)}; "
                               f"categories: {', '.join(CATEGORIES)}")
    if category is None:
        raise CaptionError(f"no category in {text!r}; categories: {', '.join(CATEGORIES)}")
    if color is None:
        raise CaptionError(f"no colour in {text!r}; colours: {', '.join(COLORS)}")
    part_color = None
    if tail is not None:
        if len(tail) != 2:
            raise CaptionError(f"'with' must be followed by a colour and the part word {PARTS[category]!r}, "
                               f"got {' '.join(tail)!r}")
        pc, part = COLOR_ALIASES.get(tail[0], tail[0]), tail[1]
        if pc not in COLORS:
            raise CaptionError(f"unknown word {pc!r}: not a colour; colours: {', '.join(COLORS)}")
        if _singular(part) != _singular(PARTS[category]):
            raise CaptionError(f"unknown word {part!r}: the part of a {category} is {PARTS[category]!r}")
        part_color = pc
    return ObjectSpec(category, color, part_color, size)


def vocabulary() -> dict:
    """Everything a caption may contain, for the README and UI examples."""
    return {
        "categories": list(CATEGORIES),
        "colors": list(COLORS),
        "sizes": list(SIZES),
        "parts": dict(PARTS),
        "default_part_colors": dict(DEFAULT_PART_COLOR),  # when a caption names none; "same" = main colour
        "grammar": "[a|an] [size] colour category [with [a|an] colour part]",
    }


@lru_cache(maxsize=None)
def _all_specs() -> tuple[ObjectSpec, ...]:
    specs = []
    for category in CATEGORIES:
        for color in COLORS:
            default_part = ObjectSpec(category, color).effective_part_color
            # A part colour equal to the default draws the same object as no part colour: listed once.
            parts = [None] + [c for c in COLORS if c != default_part]
            for size in [None, *SIZES]:
                specs.extend(ObjectSpec(category, color, pc, size) for pc in parts)
    return tuple(specs)


def all_specs() -> list[ObjectSpec]:
    """Every distinct object, in a fixed order (category, colour, size, part colour)."""
    return list(_all_specs())


def _pair_hash(color: str, category: str) -> str:
    return hashlib.sha256(f"mvgen-split|{color}|{category}".encode()).hexdigest()


@lru_cache(maxsize=None)
def heldout_pairs() -> frozenset[tuple[str, str]]:
    """The held-out (colour, category) pairs: round(HELDOUT_FRACTION * pairs) of them, in stable-hash order,
    at least one per category, at most two per category and ceil(k / colours) + 1 per colour, so that
    every colour and category keeps most of its pairs in train."""
    pairs = sorted(((c, k) for c in COLORS for k in CATEGORIES), key=lambda p: _pair_hash(*p))
    target = round(HELDOUT_FRACTION * len(pairs))
    max_per_color = -(-target // len(COLORS)) + 1
    chosen: list[tuple[str, str]] = []
    per_color = dict.fromkeys(COLORS, 0)
    per_category = dict.fromkeys(CATEGORIES, 0)

    def take(pair, category_cap):
        c, k = pair
        if pair in chosen or per_color[c] >= max_per_color or per_category[k] >= category_cap:
            return False
        chosen.append(pair)
        per_color[c] += 1
        per_category[k] += 1
        return True

    for category in CATEGORIES:  # one pair per category first: every category can be evaluated
        next(p for p in pairs if p[1] == category and take(p, 1))
    for p in pairs:
        if len(chosen) >= target:
            break
        take(p, 2)
    return frozenset(chosen)


def split_of(spec: ObjectSpec) -> str:
    """"heldout" if the spec's (colour, category) pair is held out, else "train"."""
    return "heldout" if (spec.color, spec.category) in heldout_pairs() else "train"


def example_captions(split: str = "train", n: int = 8, seed: int = 0) -> list[str]:
    """``n`` distinct captions of ``split`` ("train", "heldout" or "all"), chosen deterministically by seed."""
    if split not in (*SPLITS, "all"):
        raise ValueError(f"split must be one of {SPLITS + ('all',)}, got {split!r}")
    pool = [s for s in _all_specs() if split == "all" or split_of(s) == split]
    if not (isinstance(n, int) and 0 <= n <= len(pool)):
        raise ValueError(f"n must be an integer in [0, {len(pool)}] for split {split!r}, got {n!r}")
    return [s.caption() for s in random.Random(seed).sample(pool, n)]


def sample_specs(n: int, seed: int = 0) -> list[ObjectSpec]:
    """``n`` distinct specs from ``all_specs()`` (both splits) in a seeded random order. The order is a fixed
    permutation per seed, so a larger ``n`` extends a smaller one (datasets can grow and resume)."""
    specs = list(_all_specs())
    if not (isinstance(n, int) and 1 <= n <= len(specs)):
        raise ValueError(f"objects must be an integer in [1, {len(specs)}], got {n!r}")
    random.Random(seed).shuffle(specs)
    return specs[:n]
