"""Free wording of a caption: the many ways a user may type the object an ``ObjectSpec`` names.

Training rewrites a share of its captions with ``paraphrase`` (``TrainConfig.caption_augment``) so that the
model learns synonyms of colours, categories, parts and sizes, filler words ("a 3D model of ...") and other word
orders, not only the canonical grammar of ``mvgen.data.captions``. ``wording_benchmark_prompts`` builds the typed
prompts of the wording benchmark (`mvgen evaluate wording`), one family per kind of change.

Synonyms are chosen so that each names one colour / category / part unambiguously (no "cup" for both the mug
and the trophy); the canonical word itself is always one of the choices.
"""

from __future__ import annotations

import random

from mvgen.data.captions import ObjectSpec

COLOR_SYNONYMS: dict[str, list[str]] = {
    "red": ["red", "crimson", "scarlet", "cherry red"],
    "orange": ["orange", "tangerine", "bright orange"],
    "yellow": ["yellow", "lemon yellow", "golden", "canary yellow"],
    "green": ["green", "emerald", "grass green", "emerald green"],
    "teal": ["teal", "turquoise", "dark cyan"],
    "blue": ["blue", "navy blue", "cobalt", "royal blue", "azure"],
    "purple": ["purple", "violet", "plum", "deep purple"],
    "pink": ["pink", "rose", "hot pink", "light pink"],
    "brown": ["brown", "chocolate", "chocolate brown", "walnut brown"],
    "black": ["black", "jet black", "ebony", "pitch black"],
    "white": ["white", "ivory", "snow white", "off-white"],
    "gray": ["gray", "grey", "silver", "ash gray", "slate gray"],
}

CATEGORY_SYNONYMS: dict[str, list[str]] = {
    "mug": ["mug", "coffee mug", "tea mug"],
    "vase": ["vase", "flower vase"],
    "bottle": ["bottle", "water bottle", "flask"],
    "bowl": ["bowl", "soup bowl", "salad bowl"],
    "table": ["table", "dining table", "coffee table"],
    "chair": ["chair", "dining chair", "side chair"],
    "stool": ["stool", "bar stool", "footstool"],
    "lamp": ["lamp", "bedside lamp", "desk lamp"],
    "sofa": ["sofa", "couch", "settee"],
    "bookshelf": ["bookshelf", "bookcase", "book shelf"],
    "car": ["car", "automobile", "sedan"],
    "house": ["house", "cottage", "little house"],
    "tree": ["tree", "round tree", "leafy tree"],
    "mushroom": ["mushroom", "toadstool"],
    "snowman": ["snowman", "snow man"],
    "rocket": ["rocket", "rocket ship", "space rocket"],
    "donut": ["donut", "doughnut"],
    "cake": ["cake", "layer cake", "birthday cake"],
    "trophy": ["trophy", "award trophy", "trophy cup"],
    "dumbbell": ["dumbbell", "hand weight", "gym dumbbell"],
}

PART_SYNONYMS: dict[str, list[str]] = {
    "handle": ["handle", "grip"], "stripe": ["stripe", "band"], "cap": ["cap", "lid"], "rim": ["rim", "edge"],
    "legs": ["legs"], "shade": ["shade", "lampshade"], "cushions": ["cushions", "pillows", "seat cushions"],
    "books": ["books"], "wheels": ["wheels", "tires", "tyres"], "roof": ["roof", "rooftop"],
    "trunk": ["trunk"], "stem": ["stem", "stalk"], "hat": ["hat", "top hat"], "fins": ["fins"],
    "sprinkles": ["sprinkles"], "frosting": ["frosting", "icing"], "base": ["base", "pedestal", "stand"],
}

SIZE_SYNONYMS: dict[str, list[str]] = {"tall": ["tall", "high"], "short": ["short", "low", "squat"],
                                       "wide": ["wide", "broad"]}

PREFIXES = ["", "", "", "a 3D model of ", "a photo of ", "a render of ", "an image of ", "a 3D render of ",
            "3d asset of ", "a picture of "]
SUFFIXES = ["", "", "", ", 3D render", " on a white background", ", high quality", ", studio lighting"]


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _words(spec: ObjectSpec, rng: random.Random, synonyms: bool) -> dict:
    pick = (lambda options: rng.choice(options)) if synonyms else (lambda options: options[0])
    return {"color": pick(COLOR_SYNONYMS[spec.color]), "category": pick(CATEGORY_SYNONYMS[spec.category]),
            "size": pick(SIZE_SYNONYMS[spec.size]) if spec.size else "",
            "part": pick(PART_SYNONYMS[spec.part]),
            "part_color": pick(COLOR_SYNONYMS[spec.part_color]) if spec.part_color else ""}


def _order(w: dict, rng: random.Random, reorder: bool) -> str:
    """One sentence from the chosen words; ``reorder`` picks among word orders, else the canonical one."""
    size = f"{w['size']} " if w["size"] else ""
    head = [f"{size}{w['color']} {w['category']}"]
    if reorder:
        head += [f"{size}{w['category']} in {w['color']}", f"{size}{w['color']}-colored {w['category']}",
                 f"{size}{w['category']} that is {w['color']}", f"{size}{w['category']}, {w['color']}"]
    text = rng.choice(head)
    if w["part_color"]:
        tails = [f" with {w['part_color']} {w['part']}"]
        if reorder:
            tails += [f" and {w['part_color']} {w['part']}", f" with {w['part']} in {w['part_color']}",
                      f", its {w['part']} {w['part_color']}", f" with {w['part_color']}-colored {w['part']}"]
        text += rng.choice(tails)
    return text


def paraphrase(spec: ObjectSpec, rng: random.Random, synonyms: bool = True, fillers: bool = True,
               reorder: bool = True) -> str:
    """A random wording of ``spec``: synonyms (colours, category, part, size), filler words around it and
    another word order, each switchable; with all three off it is the canonical caption without articles."""
    text = _order(_words(spec, rng, synonyms), rng, reorder)
    if rng.random() < 0.5:
        text = f"{_article(text)} {text}"
    if fillers:
        text = rng.choice(PREFIXES) + text + rng.choice(SUFFIXES)
    return text


# Wording benchmark families: what changes with respect to the canonical caption.
FAMILIES = {
    "canonical": dict(synonyms=False, fillers=False, reorder=False),
    "filler": dict(synonyms=False, fillers=True, reorder=False),
    "order": dict(synonyms=False, fillers=False, reorder=True),
    "synonym": dict(synonyms=True, fillers=False, reorder=False),
    "all": dict(synonyms=True, fillers=True, reorder=True),
}


def wording_benchmark_prompts(specs: list[ObjectSpec], per_family: int = 1, seed: int = 0) -> list[dict]:
    """[{family, spec, prompt}] with ``per_family`` typed prompts per spec and family, seeded. Prompts that
    happen to equal the canonical caption are redrawn (up to a few times) outside the "canonical" family."""
    rng = random.Random(seed)
    rows = []
    for spec in specs:
        canonical = spec.caption()
        for family, kw in FAMILIES.items():
            for _ in range(per_family):
                for _try in range(8):
                    prompt = paraphrase(spec, rng, **kw) if family != "canonical" else canonical
                    if family == "canonical" or prompt.lower().removeprefix("a ").removeprefix("an ") \
                            != canonical.lower().removeprefix("a ").removeprefix("an "):
                        break
                rows.append({"family": family, "spec": spec, "prompt": prompt})
    return rows


def _alternation(words) -> str:
    """A regex alternation of ``words``, longest first (so "cherry red" wins over "red")."""
    import re

    return "|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True))


def without_part_colour(prompt: str) -> str | None:
    """``prompt`` with its part-colour clause removed ("a red chair with white legs" -> "a red chair"), or None
    when it has none (no part word, e.g. "a red mug").

    Reads the canonical grammar and every word order and synonym ``paraphrase`` writes: the clause starts at
    "with", "and" or ", its" before a part word, and takes the colour words before the part word, or "in <colour>"
    / "<colour>" right after it. Used for part-colour guidance (``PTDiTMultiViewPipeline.__call__``
    ``contrast_prompt``): the views are pushed from the object drawn without the clause toward the prompt's.
    """
    import re

    colour = rf"(?:{_alternation(w for ws in COLOR_SYNONYMS.values() for w in ws)})(?:-colou?red)?"
    part = _alternation(w for ws in PART_SYNONYMS.values() for w in ws)
    clause = re.compile(
        rf"(?:\s+with|\s+and|,\s*its)\s+(?:(?:a|an|the)\s+)?(?:{colour}\s+)*(?:{part})\b(?:\s+in\s+{colour}|\s+{colour})?",
        re.IGNORECASE)
    m = clause.search(prompt)
    if m is None:
        return None
    return (prompt[:m.start()] + prompt[m.end():]).strip()
