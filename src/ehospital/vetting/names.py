"""How drug names are compared: case, accents, salts and esters do not matter."""

from __future__ import annotations

import functools
import re
import unicodedata

# Salt, ester and hydrate words that name the same active moiety ("atorvastatin calcium",
# "metoprolol succinate", "diclofenac sodium"). Matched as whole words after the first one.
SALT_WORDS = frozenset(
    [
        "acetate",
        "axetil",
        "besilate",
        "besylate",
        "bromide",
        "butyrate",
        "calcium",
        "carbonate",
        "chloride",
        "citrate",
        "dihydrate",
        "diethylamine",
        "dipropionate",
        "disodium",
        "etexilate",
        "fumarate",
        "furoate",
        "hemihydrate",
        "hydrobromide",
        "hydrochloride",
        "hcl",
        "hyclate",
        "macrocrystals",
        "lactate",
        "magnesium",
        "maleate",
        "medoxomil",
        "mesilate",
        "mesylate",
        "monohydrate",
        "mononitrate",
        "nitrate",
        "phosphate",
        "potassium",
        "propionate",
        "proxetil",
        "sodium",
        "succinate",
        "sulfate",
        "sulphate",
        "tartrate",
        "trihydrate",
        "trometamol",
        "valerate",
    ]
)


@functools.lru_cache(maxsize=65536)
def fold(text: str) -> str:
    """Lower case, accents and punctuation gone, spaces collapsed: "Phénytoïne" → "phenytoine"."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return " ".join(re.sub(r"[^a-z0-9]+", " ", ascii_text.lower()).split())


@functools.lru_cache(maxsize=65536)
def key(text: str) -> str:
    """The comparison key of a drug name: folded, salt words after the first word dropped
    ("Atorvastatin Calcium" → "atorvastatin"). CJK names are kept as they are (NFKC)."""
    if any(ord(ch) > 0x2E80 for ch in text):
        return "".join(unicodedata.normalize("NFKC", text).split())
    words = fold(text).split()
    if len(words) > 1:
        words = [words[0], *(w for w in words[1:] if w not in SALT_WORDS)]
    return " ".join(words)


def french_to_english(folded: str) -> list[str]:
    """Likely English spellings of a folded French INN (the ANSM thesaurus is French):
    "simvastatine" → "simvastatin", "acide valproique" → "valproic acid". Used only as extra
    aliases of the same substance; the curated alias file covers the irregular ones."""
    found: list[str] = []
    if folded.startswith("acide ") and folded.endswith("ique"):
        found.append(folded[len("acide ") :].removesuffix("ique") + "ic acid")
    elif folded.endswith("e") and len(folded) > 5 and " " not in folded:
        found.append(folded[:-1])
    return found
