"""Seeded generators of demo prompts whose qualities a program can check.

Every prompt is a `PromptSpec`: the user-message text plus the machine-checkable facts the judges
(`judges.py`) need. Three kinds:

- ``qa``: a question with a known answer. Arithmetic and unit conversions are computed here;
  facts come from `FACTS` (capitals, chemical symbols, planet order, a few general facts).
  ``answer`` is the canonical answer (a string), ``numeric_answer`` its value when it is a number,
  ``aliases`` other accepted spellings, ``distractors`` wrong answers of the same type (other
  capitals, other planets, ...) whose mention counts as contradicting the answer, and
  ``context_numbers`` the numbers that may appear in a correct explanation without contradicting
  it (the operands, a conversion factor).
- ``open``: an open request about one of the `TOPICS`; ``key_terms`` are the 4-6 terms a good
  answer covers (each term is a list of accepted spellings; the first is the display form).
- ``instruction``: a base task (a question, a topic request or a "list some X" request) plus 1-2
  verifiable ``constraints`` (word limits, exact bullet / numbered-item counts, required keywords,
  all lowercase / uppercase, end with a question, JSON object with given keys, one sentence,
  start with a given word, no commas). The spec keeps the base task's answer / key terms, so
  correctness and informativeness have signal on instruction prompts too. List requests carry
  ``members``: the accepted items of the category (judged by correctness).

Constraint keys (all optional; the judge checks only those present):
``max_words: int``, ``min_words: int``, ``n_bullets: int``, ``n_numbered: int``,
``keywords: [str]``, ``lowercase: true``, ``uppercase: true``, ``end_with_question: true``,
``json_keys: [str]`` (a JSON object containing these keys), ``max_sentences: int``,
``start_with: str``, ``no_commas: true``.

`generate_prompts(seed, n)` is deterministic in (seed, n); `split_prompts` makes the held-out split.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Any, Mapping, Sequence

__all__ = [
    "PromptSpec",
    "FACTS",
    "TOPICS",
    "LIST_CATEGORIES",
    "UNIT_CONVERSIONS",
    "KIND_SHARES",
    "generate_prompts",
    "split_prompts",
]


@dataclass(frozen=True)
class PromptSpec:
    """One demo prompt and what a program can check about a reply to it.

    Attributes:
        id: stable id, "<category>-<n>" (unique within one generated set).
        kind: "qa", "open" or "instruction".
        category: the generator: "arithmetic", "unit_conversion", "fact", "topic", "list".
        prompt: the user message, exactly as the model sees it.
        subject: what the prompt is about (topic name, country, element, ...), for the on-topic check.
        constraints: verifiable instructions (see the module docstring); empty for qa/open prompts.
        answer: the canonical known answer (qa, and instruction prompts built on a question), else None.
        numeric_answer: the answer's value when it is a number, else None.
        aliases: other accepted spellings of the answer.
        answer_case_sensitive: match the answer with case (chemical symbols: "Na" is not "na").
        distractors: wrong answers of the same type; mentioning one contradicts the answer.
        context_numbers: numbers a correct explanation may mention (operands, conversion factor).
        key_terms: for topic prompts, the terms a good answer covers; each a list of spellings.
        members: for list prompts, the accepted items of the category (lowercase; a member of
            more than 3 letters also matches words it starts: "strawberr" matches "strawberries").
        expression: for arithmetic and unit conversions, the computation behind the answer
            ("17 + 25", "3 * 100"); tests recompute it.
    """

    id: str
    kind: str
    category: str
    prompt: str
    subject: str = ""
    constraints: Mapping[str, Any] = field(default_factory=dict)
    answer: str | None = None
    numeric_answer: float | None = None
    aliases: tuple[str, ...] = ()
    answer_case_sensitive: bool = False
    distractors: tuple[str, ...] = ()
    context_numbers: tuple[float, ...] = ()
    key_terms: tuple[tuple[str, ...], ...] = ()
    members: tuple[str, ...] = ()
    expression: str | None = None

    def to_dict(self) -> dict:
        """JSON-serialisable dict (tuples become lists); `from_dict` inverts it."""
        d = asdict(self)
        d["constraints"] = {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in self.constraints.items()}
        d["aliases"] = list(self.aliases)
        d["distractors"] = list(self.distractors)
        d["context_numbers"] = list(self.context_numbers)
        d["key_terms"] = [list(t) for t in self.key_terms]
        d["members"] = list(self.members)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "PromptSpec":
        return cls(
            id=d["id"], kind=d["kind"], category=d["category"], prompt=d["prompt"], subject=d.get("subject", ""),
            constraints={k: (tuple(v) if isinstance(v, list) else v) for k, v in d.get("constraints", {}).items()},
            answer=d.get("answer"), numeric_answer=d.get("numeric_answer"),
            aliases=tuple(d.get("aliases", ())), answer_case_sensitive=bool(d.get("answer_case_sensitive", False)),
            distractors=tuple(d.get("distractors", ())), context_numbers=tuple(d.get("context_numbers", ())),
            key_terms=tuple(tuple(t) for t in d.get("key_terms", ())), members=tuple(d.get("members", ())),
            expression=d.get("expression"),
        )


# ------------------------------------------------------------------------------------------------
# Tables
# ------------------------------------------------------------------------------------------------

CAPITALS = {
    "France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid", "Japan": "Tokyo",
    "Canada": "Ottawa", "Australia": "Canberra", "Egypt": "Cairo", "Russia": "Moscow", "China": "Beijing",
    "Greece": "Athens", "Portugal": "Lisbon", "Norway": "Oslo", "Sweden": "Stockholm", "Kenya": "Nairobi",
    "Ireland": "Dublin", "Poland": "Warsaw", "Turkey": "Ankara", "South Korea": "Seoul", "Thailand": "Bangkok",
    "Argentina": "Buenos Aires", "Peru": "Lima", "Austria": "Vienna", "Finland": "Helsinki",
}
SYMBOLS = {
    "gold": "Au", "silver": "Ag", "iron": "Fe", "sodium": "Na", "potassium": "K", "copper": "Cu",
    "lead": "Pb", "mercury": "Hg", "helium": "He", "calcium": "Ca", "oxygen": "O", "hydrogen": "H",
    "carbon": "C", "nitrogen": "N", "tin": "Sn", "zinc": "Zn",
}

PLANETS = ("Mercury", "Venus", "Earth", "Mars", "Jupiter", "Saturn", "Uranus", "Neptune")
ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth")

# (question, answer, aliases, distractors); a numeric answer is a string of digits.
MISC_FACTS: tuple[tuple[str, str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("Which planet is known as the Red Planet?", "Mars", (), tuple(p for p in PLANETS if p != "Mars")),
    ("Which is the largest planet in our solar system?", "Jupiter", (), tuple(p for p in PLANETS if p != "Jupiter")),
    ("Which planet is closest to the Sun?", "Mercury", (), tuple(p for p in PLANETS if p != "Mercury")),
    ("What is the largest ocean on Earth?", "Pacific", (), ("Atlantic", "Indian", "Arctic", "Southern")),
    ("What gas do plants take in from the air to make food?", "carbon dioxide", ("CO2",),
     ("nitrogen", "helium")),
    ("What gas do humans need to breathe in to live?", "oxygen", (), ("carbon dioxide", "helium")),
    ("Who wrote Romeo and Juliet?", "Shakespeare", (), ("Dickens", "Austen", "Tolstoy")),
    ("What is the hardest natural substance?", "diamond", ("diamonds",), ("gold", "iron", "quartz", "granite")),
    ("What is the tallest mountain in the world?", "Everest", (), ("K2", "Kilimanjaro", "Mont Blanc")),
    ("What color do you get when you mix blue and yellow?", "green", (), ("purple", "orange", "brown")),
    ("What color do you get when you mix red and white?", "pink", (), ("purple", "orange", "brown")),
    ("What is the largest animal on Earth?", "blue whale", (), ("elephant", "giraffe", "shark")),
    ("What is frozen water called?", "ice", (), ("steam", "vapor")),
    ("What is the closest star to Earth?", "Sun", (), ("Proxima", "Sirius", "Polaris", "Vega", "Alpha Centauri")),
    ("How many continents are there on Earth?", "7", (), ()),
    ("How many legs does a spider have?", "8", (), ()),
    ("How many legs does an insect have?", "6", (), ()),
    ("How many sides does a hexagon have?", "6", (), ()),
    ("How many sides does a triangle have?", "3", (), ()),
    ("How many days are there in a leap year?", "366", (), ()),
    ("How many planets are in our solar system?", "8", (), ()),
    ("At what temperature in degrees Celsius does water boil at sea level?", "100", (), ()),
    ("At what temperature in degrees Celsius does water freeze?", "0", (), ()),
    ("How many strings does a standard guitar have?", "6", (), ()),
)

# name -> factor: "How many <to> are in <n> <from>?" has answer n * factor.
UNIT_CONVERSIONS: tuple[tuple[str, str, int], ...] = (
    ("meters", "centimeters", 100), ("kilometers", "meters", 1000), ("kilograms", "grams", 1000),
    ("hours", "minutes", 60), ("minutes", "seconds", 60), ("days", "hours", 24), ("weeks", "days", 7),
    ("liters", "milliliters", 1000), ("feet", "inches", 12), ("yards", "feet", 3),
    ("centimeters", "millimeters", 10), ("years", "months", 12), ("dozen", "eggs", 12),
)

# (subject for templates, short name, key terms; each term a tuple of accepted spellings)
TOPICS: tuple[tuple[str, tuple[tuple[str, ...], ...]], ...] = (
    ("photosynthesis", (("sunlight", "light"), ("chlorophyll",), ("carbon dioxide", "CO2"), ("glucose", "sugar"),
                        ("oxygen",))),
    ("the water cycle", (("evaporation", "evaporate"), ("condensation", "condense"), ("precipitation", "rain"),
                         ("clouds", "cloud"), ("ocean", "oceans", "sea"))),
    ("volcanoes", (("magma",), ("lava",), ("eruption", "erupt", "erupts"), ("tectonic", "plates"), ("ash",))),
    ("earthquakes", (("tectonic", "plates"), ("fault", "faults"), ("seismic",), ("energy",), ("magnitude",))),
    ("the human heart", (("blood",), ("pump", "pumps"), ("chambers", "chamber"), ("arteries", "artery"),
                         ("veins", "vein"), ("oxygen",))),
    ("gravity", (("mass",), ("force",), ("Newton",), ("attract", "attraction", "pull"), ("Earth",))),
    ("vaccines", (("immune",), ("antibodies", "antibody"), ("virus", "viruses"), ("disease", "diseases"),
                  ("protect", "protection"))),
    ("the internet", (("network", "networks"), ("computers", "computer"), ("data",), ("servers", "server"),
                      ("protocol", "protocols"))),
    ("recycling", (("waste",), ("plastic",), ("paper",), ("reuse", "reused"), ("environment", "environmental"))),
    ("climate change", (("greenhouse",), ("carbon dioxide", "CO2"), ("temperature", "temperatures", "warming"),
                        ("fossil fuels", "fossil fuel"), ("sea level", "sea levels"))),
    ("the phases of the Moon", (("new moon",), ("full moon",), ("crescent",), ("sunlight", "light"),
                                ("orbit", "orbits"))),
    ("rainbows", (("sunlight", "light"), ("water droplets", "droplets", "raindrops"), ("refraction", "refract"),
                  ("colors", "colours", "spectrum"), ("reflection", "reflect"))),
    ("electricity", (("electrons", "electron"), ("current",), ("voltage",), ("circuit", "circuits"),
                     ("energy",))),
    ("magnets", (("magnetic field", "field"), ("north",), ("south",), ("poles", "pole"), ("iron",),
                 ("attract", "attraction"))),
    ("the immune system", (("white blood cells", "white blood cell"), ("antibodies", "antibody"),
                           ("infection", "infections"), ("bacteria",), ("virus", "viruses"))),
    ("digestion", (("stomach",), ("intestine", "intestines"), ("enzymes", "enzyme"), ("nutrients", "nutrient"),
                   ("food",))),
    ("DNA", (("genes", "gene", "genetic"), ("cells", "cell"), ("double helix", "helix"), ("proteins", "protein"),
             ("nucleotides", "nucleotide", "bases"))),
    ("bees and pollination", (("pollen",), ("flowers", "flower"), ("nectar",), ("honey",), ("plants", "plant"))),
    ("the solar system", (("sun",), ("planets", "planet"), ("orbit", "orbits"), ("gravity",), ("moons", "moon"))),
    ("the moon", (("orbit", "orbits"), ("Earth",), ("tides", "tide"), ("craters", "crater"), ("gravity",))),
    ("clouds", (("water vapor", "vapour", "vapor"), ("condensation", "condense"), ("droplets", "droplet"),
                ("rain",), ("air",))),
    ("the seasons", (("tilt", "tilted"), ("axis",), ("orbit", "orbits"), ("summer",), ("winter",))),
    ("sleep", (("brain",), ("memory", "memories"), ("rest",), ("hours", "hour"), ("dreams", "dream", "dreaming"))),
    ("exercise", (("heart",), ("muscles", "muscle"), ("health", "healthy"), ("energy",), ("weight",))),
    ("a healthy diet", (("vegetables", "vegetable"), ("fruit", "fruits"), ("protein",), ("vitamins", "vitamin"),
                        ("water",))),
    ("bacteria", (("cells", "cell", "single-celled"), ("infection", "infections"), ("antibiotics", "antibiotic"),
                  ("microscope", "microscopic"), ("disease", "diseases"))),
    ("rain forests", (("trees", "tree"), ("species",), ("rain", "rainfall"), ("oxygen",), ("biodiversity",))),
    ("deserts", (("dry",), ("sand",), ("rain", "rainfall"), ("cactus", "cacti"), ("temperature", "hot"))),
    ("the ocean tides", (("moon",), ("gravity", "gravitational"), ("high tide",), ("low tide",), ("sun",))),
    ("solar power", (("sunlight", "sun"), ("panels", "panel"), ("electricity",), ("renewable",),
                     ("energy",))),
    ("wind turbines", (("wind",), ("blades", "blade"), ("generator",), ("electricity",), ("renewable",))),
    ("computers", (("processor", "CPU"), ("memory",), ("software",), ("data",), ("programs", "program"))),
    ("money", (("trade",), ("goods",), ("value",), ("banks", "bank"), ("currency",))),
    ("democracy", (("vote", "voting", "votes"), ("citizens", "citizen", "people"), ("elections", "election"),
                   ("government",), ("rights",))),
    ("the printing press", (("Gutenberg",), ("books", "book"), ("ink",), ("paper",), ("knowledge",))),
    ("dinosaurs", (("extinct", "extinction"), ("fossils", "fossil"), ("reptiles", "reptile"),
                   ("asteroid",), ("million years", "millions of years"))),
    ("the human brain", (("neurons", "neuron"), ("memory",), ("nervous system", "nerves"), ("thinking", "think"),
                         ("signals", "signal"))),
    ("sound", (("vibrations", "vibration", "vibrate"), ("waves", "wave"), ("air",), ("ear", "ears"),
               ("frequency", "pitch"))),
    ("friction", (("force",), ("surfaces", "surface"), ("heat",), ("motion", "moving"), ("slow",))),
    ("plants", (("roots", "root"), ("leaves", "leaf"), ("sunlight", "light"), ("water",), ("photosynthesis",))),
    ("the Roman Empire", (("Rome",), ("emperor", "emperors"), ("Caesar",), ("legions", "army"),
                          ("roads", "road"))),
    ("teeth", (("enamel",), ("brush", "brushing"), ("chew", "chewing"), ("cavities", "cavity"), ("dentist",))),
)

# category (plural noun) -> accepted members (lowercase; a listed item is right if one appears in it)
LIST_CATEGORIES: dict[str, tuple[str, ...]] = {
    "fruits": ("apple", "banana", "orange", "grape", "strawberr", "mango", "pear", "peach", "cherr", "lemon",
               "lime", "pineapple", "watermelon", "melon", "kiwi", "plum", "blueberr", "raspberr", "apricot",
               "papaya", "coconut", "fig", "pomegranate", "avocado", "grapefruit", "blackberr", "tangerine",
               "nectarine", "cranberr", "date"),
    "colors": ("red", "blue", "green", "yellow", "orange", "purple", "pink", "black", "white", "brown", "gray",
               "grey", "violet", "indigo", "cyan", "magenta", "turquoise", "gold", "silver", "beige", "teal",
               "maroon", "navy"),
    "animals": ("dog", "cat", "lion", "tiger", "elephant", "horse", "cow", "bear", "wolf", "fox", "rabbit",
                "monkey", "giraffe", "zebra", "bird", "fish", "whale", "dolphin", "shark", "snake", "eagle",
                "owl", "deer", "mouse", "sheep", "goat", "pig", "kangaroo", "penguin", "frog", "turtle", "panda",
                "koala", "camel", "chicken", "duck", "bee", "ant", "butterfl", "squirrel", "hippo", "rhino",
                "crocodile", "octopus", "parrot", "leopard", "cheetah", "gorilla"),
    "vegetables": ("carrot", "potato", "tomato", "broccoli", "spinach", "lettuce", "onion", "pea", "bean",
                   "cabbage", "cucumber", "pepper", "corn", "celery", "garlic", "kale", "cauliflower", "zucchini",
                   "eggplant", "beet", "radish", "asparagus", "pumpkin", "squash", "sweet potato", "mushroom",
                   "leek", "turnip", "artichoke", "sprout"),
    "planets": tuple(p.lower() for p in PLANETS),
    "musical instruments": ("piano", "guitar", "violin", "drum", "flute", "trumpet", "saxophone", "cello",
                            "clarinet", "harp", "bass", "ukulele", "trombone", "oboe", "banjo", "harmonica",
                            "accordion", "tuba", "organ", "keyboard", "viola", "xylophone", "mandolin", "horn",
                            "bagpipe", "synthesizer"),
    "sports": ("soccer", "football", "basketball", "tennis", "baseball", "cricket", "golf", "swimming",
               "running", "volleyball", "hockey", "rugby", "boxing", "cycling", "skiing", "badminton",
               "table tennis", "wrestling", "gymnastics", "surfing", "skating", "athletics", "track",
               "softball", "karate", "judo", "fencing", "rowing", "archery", "snowboard", "handball", "bowling",
               "lacrosse", "polo", "marathon", "climbing", "diving", "sailing"),
    "European countries": ("france", "germany", "italy", "spain", "portugal", "greece", "poland", "sweden",
                           "norway", "finland", "denmark", "ireland", "austria", "switzerland", "belgium",
                           "netherlands", "holland", "united kingdom", "uk", "england", "scotland", "wales",
                           "britain", "hungary", "czech", "romania", "bulgaria", "croatia", "serbia", "ukraine",
                           "russia", "iceland", "slovakia", "slovenia", "estonia", "latvia", "lithuania",
                           "luxembourg", "malta", "cyprus", "albania", "belarus", "moldova", "monaco"),
    "programming languages": ("python", "java", "javascript", "c++", "c#", "ruby", "go", "rust", "swift",
                              "kotlin", "php", "typescript", "perl", "scala", "haskell", "r", "matlab", "lua",
                              "julia", "fortran", "cobol", "pascal", "lisp", "dart", "sql", "c", "basic",
                              "assembly", "objective-c", "elixir", "erlang", "clojure", "bash", "shell"),
    "days of the week": ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"),
    "kitchen tools": ("knife", "spoon", "fork", "pan", "pot", "spatula", "whisk", "ladle", "grater", "peeler",
                      "cutting board", "blender", "mixer", "oven", "toaster", "kettle", "colander", "tongs",
                      "rolling pin", "measuring cup", "can opener", "microwave", "sieve", "strainer", "bowl",
                      "scissors", "skillet", "wok", "mortar", "thermometer", "timer", "scale"),
}

# Fraction of prompts of each kind (rounded; the rest go to "instruction").
KIND_SHARES = {"qa": 0.35, "open": 0.30, "instruction": 0.35}


# ------------------------------------------------------------------------------------------------
# Number formatting
# ------------------------------------------------------------------------------------------------


def _fmt(x: Fraction | int | float) -> str:
    """A number as a short string: integers without a decimal point, otherwise up to 4 decimals."""
    x = Fraction(x)
    if x.denominator == 1:
        return str(x.numerator)
    return f"{float(x):.4f}".rstrip("0").rstrip(".")


# ------------------------------------------------------------------------------------------------
# Base generators: each returns a partial spec (dict) with prompt text and checkable facts
# ------------------------------------------------------------------------------------------------

_ARITH_OPS = ("+", "-", "*", "/")


def _arithmetic(rng: random.Random) -> dict:
    op = rng.choice(_ARITH_OPS)
    if op == "+":
        a, b = rng.randint(11, 99), rng.randint(11, 99)
        value = a + b
        text = rng.choice(["What is {a} + {b}?", "What is {a} plus {b}?", "Add {a} and {b}.",
                           "Tom has {a} apples and buys {b} more. How many apples does he have now?"])
    elif op == "-":
        a, b = rng.randint(30, 150), rng.randint(11, 29)
        value = a - b
        text = rng.choice(["What is {a} - {b}?", "What is {a} minus {b}?", "Subtract {b} from {a}.",
                           "A shop has {a} books and sells {b}. How many books are left?"])
    elif op == "*":
        a, b = rng.randint(3, 19), rng.randint(3, 12)
        value = a * b
        text = rng.choice(["What is {a} times {b}?", "What is {a} multiplied by {b}?", "Calculate {a} x {b}.",
                           "A box holds {b} pens. How many pens are in {a} boxes?"])
    else:
        b, q = rng.randint(2, 12), rng.randint(3, 25)
        a, value = b * q, q
        text = rng.choice(["What is {a} divided by {b}?", "What is {a} / {b}?",
                           "Share {a} sweets equally among {b} children. How many does each child get?"])
    if value in (a, b):  # the answer must not be an operand, or echoing the prompt would look right
        return _arithmetic(rng)
    return dict(category="arithmetic", prompt=text.format(a=a, b=b), subject="arithmetic",
                answer=_fmt(value), numeric_answer=float(value), context_numbers=(float(a), float(b)),
                expression=f"{a} {op} {b}")


def _unit_conversion(rng: random.Random) -> dict:
    src, dst, factor = rng.choice(UNIT_CONVERSIONS)
    n = rng.randint(2, 12)
    value = n * factor
    if src == "dozen":
        text = f"How many eggs are in {n} dozen?"
    else:
        text = rng.choice([f"How many {dst} are in {n} {src}?", f"Convert {n} {src} to {dst}.",
                           f"How many {dst} are there in {n} {src}?"])
    return dict(category="unit_conversion", prompt=text, subject=dst, answer=_fmt(value),
                numeric_answer=float(value), context_numbers=(1.0, float(n), float(factor)),
                expression=f"{n} * {factor}")


def _all_facts() -> list[dict]:
    """Every fact question with its answer (fixed order)."""
    facts: list[dict] = []
    caps = list(CAPITALS.values())
    for country, capital in CAPITALS.items():
        facts.append(dict(prompt=f"What is the capital of {country}?", subject=country, answer=capital,
                          distractors=tuple(c for c in caps if c != capital)))
    # Distractors: the other two-letter symbols except "He" (also an ordinary word); one-letter
    # symbols (O, H, C, N, K) are too easily written for other reasons ("vitamin C") to count.
    syms = [s for s in SYMBOLS.values() if len(s) == 2 and s != "He"]
    for element, symbol in SYMBOLS.items():
        facts.append(dict(prompt=f"What is the chemical symbol for {element}?", subject=element, answer=symbol,
                          answer_case_sensitive=True, distractors=tuple(s for s in syms if s != symbol)))
    for i, planet in enumerate(PLANETS):
        facts.append(dict(prompt=f"Which planet is {ORDINALS[i]} from the Sun?", subject="planet", answer=planet,
                          distractors=tuple(p for p in PLANETS if p != planet)))
    for question, answer, aliases, distractors in MISC_FACTS:
        d = dict(prompt=question, subject=question, answer=answer, aliases=aliases, distractors=distractors)
        if answer.isdigit():
            d["numeric_answer"] = float(answer)
            d["context_numbers"] = ()
        facts.append(d)
    return facts


FACTS: tuple[dict, ...] = tuple(_all_facts())
"""Every fact question (capitals, chemical symbols, planet order, general facts) with its answer."""


def _fact(rng: random.Random) -> dict:
    return dict(category="fact", **rng.choice(FACTS))


_TOPIC_TEMPLATES = ("Explain {t}.", "Tell me about {t}.", "Describe {t} in simple terms.",
                    "What should a student know about {t}?", "Give an overview of {t}.",
                    "Explain {t} to a child.", "What is interesting about {t}?")


def _topic(rng: random.Random, templates: Sequence[str] = _TOPIC_TEMPLATES) -> dict:
    name, terms = rng.choice(TOPICS)
    text = rng.choice(templates).format(t=name)
    text = text[0].upper() + text[1:]
    return dict(category="topic", prompt=text, subject=name, key_terms=terms)


def _list_task(rng: random.Random, n: int, style: str) -> dict:
    cat = rng.choice(sorted(LIST_CATEGORIES))
    noun = cat
    if style == "bullets":
        text = rng.choice([f"List exactly {n} {noun} as bullet points.",
                           f"Name {n} {noun}. Use exactly {n} bullet points."])
        cons = {"n_bullets": n}
    else:
        text = rng.choice([f"Give a numbered list of exactly {n} {noun}.",
                           f"Name {n} {noun} as a numbered list."])
        cons = {"n_numbered": n}
    return dict(category="list", prompt=text, subject=cat, members=LIST_CATEGORIES[cat], constraints=cons)


# ------------------------------------------------------------------------------------------------
# Constraints for instruction prompts
# ------------------------------------------------------------------------------------------------

_GENERIC_KEYWORDS = ("because", "simple", "example", "important", "answer", "clearly")
_START_WORDS = ("Sure", "Okay", "Answer", "Well", "Yes")

# constraint name -> (applies to bases, clashes with)
_CLASHES = {
    "max_words": {"min_words"},
    "min_words": {"max_words", "max_sentences"},
    "n_bullets": {"n_numbered", "json_keys", "max_sentences"},
    "n_numbered": {"n_bullets", "json_keys", "max_sentences"},
    "keywords": set(),
    "lowercase": {"uppercase", "json_keys", "start_with"},
    "uppercase": {"lowercase", "json_keys", "start_with"},
    "end_with_question": {"json_keys"},
    "json_keys": {"n_bullets", "n_numbered", "lowercase", "uppercase", "end_with_question", "max_sentences",
                  "start_with", "no_commas", "min_words"},
    "max_sentences": {"n_bullets", "n_numbered", "json_keys", "min_words"},
    "start_with": {"json_keys", "lowercase", "uppercase"},
    "no_commas": {"json_keys"},
}


def _make_constraint(name: str, base: dict, rng: random.Random) -> tuple[dict, str]:
    """(constraint dict, the sentence that states it) for one constraint on `base`."""
    if name == "max_words":
        n = rng.choice((10, 15, 20, 30) if base["category"] != "topic" else (20, 30, 40))
        return {"max_words": n}, rng.choice([f"Answer in at most {n} words.", f"Use no more than {n} words."])
    if name == "min_words":
        n = rng.choice((40, 50, 60))
        return {"min_words": n}, rng.choice([f"Write at least {n} words.", f"Use at least {n} words."])
    if name == "n_bullets":
        n = rng.choice((2, 3, 4, 5))
        return {"n_bullets": n}, f"Use exactly {n} bullet points."
    if name == "n_numbered":
        n = rng.choice((2, 3, 4))
        return {"n_numbered": n}, f"Answer as a numbered list with exactly {n} items."
    if name == "keywords":
        if base.get("key_terms"):
            picks = rng.sample(list(base["key_terms"]), 2)
            words = tuple(t[0] for t in picks)
        else:
            words = (rng.choice(_GENERIC_KEYWORDS),)
        quoted = " and ".join(f"'{w}'" for w in words)
        noun = "words" if len(words) > 1 else "word"
        return {"keywords": words}, f"Include the {noun} {quoted}."
    if name == "lowercase":
        return {"lowercase": True}, rng.choice(["Write your whole answer in lowercase letters.",
                                                "Use only lowercase letters."])
    if name == "uppercase":
        return {"uppercase": True}, rng.choice(["Write your whole answer in capital letters.",
                                                "Use only uppercase letters."])
    if name == "end_with_question":
        return {"end_with_question": True}, "End your answer with a question."
    if name == "json_keys":
        keys = ("answer", "explanation") if base.get("answer") is not None else ("topic", "summary")
        return {"json_keys": keys}, (f"Reply only with a JSON object with the keys \"{keys[0]}\" and "
                                     f"\"{keys[1]}\".")
    if name == "max_sentences":
        return {"max_sentences": 1}, rng.choice(["Answer in one sentence.", "Reply with a single sentence."])
    if name == "start_with":
        w = rng.choice(_START_WORDS)
        return {"start_with": w}, f"Start your answer with the word '{w}'."
    if name == "no_commas":
        return {"no_commas": True}, "Do not use any commas."
    raise ValueError(name)


_QA_CONSTRAINTS = ("max_words", "keywords", "lowercase", "uppercase", "end_with_question", "json_keys",
                   "max_sentences", "start_with", "no_commas", "min_words")
_TOPIC_CONSTRAINTS = ("max_words", "min_words", "n_bullets", "n_numbered", "keywords", "lowercase", "uppercase",
                      "end_with_question", "json_keys", "max_sentences", "start_with", "no_commas")
_LIST_CONSTRAINTS = ("lowercase", "uppercase", "start_with", "no_commas", "end_with_question", "keywords")


def _instruction(rng: random.Random) -> dict:
    r = rng.random()
    if r < 0.35:
        base = (_arithmetic if rng.random() < 0.4 else _unit_conversion if rng.random() < 0.3 else _fact)(rng)
        pool = _QA_CONSTRAINTS
    elif r < 0.75:
        base = _topic(rng, ("Explain {t}.", "Describe {t}.", "Tell me about {t}.", "What is important about {t}?"))
        pool = _TOPIC_CONSTRAINTS
    else:
        base = _list_task(rng, rng.choice((3, 4, 5)), rng.choice(("bullets", "numbered")))
        pool = _LIST_CONSTRAINTS
    constraints = dict(base.pop("constraints", {}))
    sentences = []
    n_extra = 1 if (constraints or rng.random() < 0.5) else 2
    for _ in range(n_extra):
        options = [c for c in pool if c not in constraints
                   and not (_CLASHES[c] & set(constraints)) and not any(c in _CLASHES[k] for k in constraints)]
        if not options:
            break
        name = rng.choice(options)
        cons, sentence = _make_constraint(name, base, rng)
        constraints.update(cons)
        sentences.append(sentence)
    base["prompt"] = " ".join([base["prompt"], *sentences])
    base["constraints"] = constraints
    return base


# ------------------------------------------------------------------------------------------------
# Public API
# ------------------------------------------------------------------------------------------------


def _to_spec(kind: str, d: dict, idx: int) -> PromptSpec:
    d = dict(d)
    category = d.pop("category")
    return PromptSpec(id=f"{category}-{idx:04d}", kind=kind, category=category, **d)


def _kind_counts(n: int) -> dict[str, int]:
    qa = round(n * KIND_SHARES["qa"])
    op = round(n * KIND_SHARES["open"])
    return {"qa": qa, "open": op, "instruction": n - qa - op}


def generate_prompts(seed: int = 0, n: int = 320) -> list[PromptSpec]:
    """`n` distinct prompts (distinct texts), mixed over kinds by `KIND_SHARES`, in a seeded order.

    qa prompts are split about 40% arithmetic, 25% unit conversion, 35% facts. Deterministic in
    (seed, n). Raises ValueError when `n` exceeds what the tables can give distinctly (~900).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    rng = random.Random(f"lambda-dpo-demo-prompts:{seed}")
    seen: set[str] = set()
    specs: list[PromptSpec] = []
    counter = 0

    def draw(kind: str, make) -> None:
        nonlocal counter
        for _ in range(200):
            d = make(rng)
            if d["prompt"] not in seen:
                seen.add(d["prompt"])
                counter += 1
                specs.append(_to_spec(kind, d, counter))
                return
        raise ValueError(f"cannot make {n} distinct prompts (ran out of distinct {kind} prompts)")

    def qa_maker(r: random.Random) -> dict:
        u = r.random()
        return _arithmetic(r) if u < 0.40 else _unit_conversion(r) if u < 0.65 else _fact(r)

    counts = _kind_counts(n)
    for _ in range(counts["qa"]):
        draw("qa", qa_maker)
    for _ in range(counts["open"]):
        draw("open", _topic)
    for _ in range(counts["instruction"]):
        draw("instruction", _instruction)
    rng.shuffle(specs)
    return specs


def split_prompts(specs: Sequence[PromptSpec], n_eval: int, seed: int = 0) -> tuple[list[PromptSpec],
                                                                                     list[PromptSpec]]:
    """(train, eval): `n_eval` held-out prompts, stratified by kind (proportional, seeded), order kept.

    Prompt texts are distinct, so no prompt is in both splits.
    """
    if not 0 <= n_eval <= len(specs):
        raise ValueError(f"n_eval={n_eval} must be between 0 and the number of prompts ({len(specs)})")
    rng = random.Random(f"lambda-dpo-demo-split:{seed}")
    by_kind: dict[str, list[int]] = {}
    for i, s in enumerate(specs):
        by_kind.setdefault(s.kind, []).append(i)
    # largest-remainder apportionment of n_eval over kinds
    quotas = {k: n_eval * len(v) / len(specs) for k, v in by_kind.items()} if specs else {}
    alloc = {k: int(q) for k, q in quotas.items()}
    for k in sorted(quotas, key=lambda k: (-(quotas[k] - alloc[k]), k))[: n_eval - sum(alloc.values())]:
        alloc[k] += 1
    held: set[int] = set()
    for k in sorted(by_kind):
        held.update(rng.sample(by_kind[k], alloc[k]))
    train = [s for i, s in enumerate(specs) if i not in held]
    evals = [s for i, s in enumerate(specs) if i in held]
    return train, evals
