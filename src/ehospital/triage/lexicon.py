"""The triage lexicon (`data/lexicon.json`) compiled into matchers: Chinese terms as substrings,
longest first; English terms as sequences of lightly stemmed words; negation in both."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

LEXICON_PATH = Path(__file__).parent / "data" / "lexicon.json"

# Words and numbers; a hyphen splits ("self-harm" = "self harm"), an apostrophe does not ("can't").
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)*")
_CLAUSE_BREAK = re.compile(r"[.,;:!?()\n\u3002\uff0c\uff1b\uff01\uff1f]")
_CJK = re.compile(r"[\u3400-\u9fff]")
_EN_WINDOW = 6  # "a+b": the parts within this many words of each other


def normalise(text: str) -> str:
    """Lower case, full-width ASCII folded, curly apostrophes straightened."""
    out = []
    for ch in text:
        code = ord(ch)
        if 0xFF01 <= code <= 0xFF5E and ch not in "，；！？（）：":
            ch = chr(code - 0xFEE0)
        out.append(ch)
    return "".join(out).replace("\u2019", "'").replace("\u2018", "'").lower()


def stem(word: str) -> str:
    """A deliberately crude stemmer: the lexicon goes through it too, so only consistency matters."""
    if word.endswith("n't") or not word.isalpha():
        return word
    for suffix in ("iness", "ness", "ing", "ed", "ly"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            if suffix in ("ing", "ed") and word[-1] == word[-2] and word[-1] not in "lsz":
                word = word[:-1]  # thinning -> thin, slurred -> slur
            break
    else:
        if word.endswith("es") and len(word) > 4 and word[-3] in "sxzh":
            word = word[:-2]
        elif (word.endswith("s") and not word.endswith("ss") and len(word) > 3) or (
            word.endswith("y") and len(word) > 4
        ):
            word = word[:-1]
    if word.endswith("e") and len(word) > 3:
        word = word[:-1]
    return word


@dataclass(frozen=True)
class Token:
    stem: str
    start: int
    end: int
    after_break: bool  # punctuation between this word and the one before


def tokens(text: str) -> list[Token]:
    """The English words of normalised text (also the Latin words inside Chinese text)."""
    found: list[Token] = []
    previous_end = 0
    for m in _WORD.finditer(text):
        gap = text[previous_end : m.start()]
        found.append(Token(stem(m.group()), m.start(), m.end(), bool(_CLAUSE_BREAK.search(gap))))
        previous_end = m.end()
    return found


def english_term(term: str) -> tuple[tuple[str, ...], ...]:
    """'chest+pain' -> (('chest',), ('pain',)); 'blood sugar' -> (('blood', 'sugar'),)."""
    parts = []
    for part in term.split("+"):
        stems = tuple(t.stem for t in tokens(normalise(part)))
        if stems:
            parts.append(stems)
    return tuple(parts)


@dataclass(frozen=True)
class Group:
    """Terms that count once together, for one target, with one weight."""

    key: str  # "centre:skin", "clinic:skin/acne", "ctx:child", "flag:stroke/0/1"
    weight: float
    zh: tuple[str, ...]
    en: tuple[tuple[tuple[str, ...], ...], ...]
    en_text: tuple[str, ...]


@dataclass(frozen=True)
class Hit:
    key: str
    weight: float
    term: str  # as written in the lexicon
    surface: str  # as written by the patient
    start: int  # character offsets in the normalised text
    end: int
    negated: bool


@dataclass
class Negation:
    zh_cues: tuple[str, ...]
    zh_pseudo: tuple[str, ...]
    zh_breaks: tuple[str, ...]
    zh_window: int
    en_cues: frozenset[str]
    en_breaks: frozenset[str]
    en_window: int


@dataclass
class Matcher:
    """Finds the groups' terms in a text. With `consume`, a span used by a longer term is not
    used again by a shorter one (longest match first); otherwise every group matches freely."""

    groups: list[Group]
    negation: Negation
    consume: bool
    _zh: list[tuple[str, Group]] = field(default_factory=list)
    _en: list[tuple[tuple[tuple[str, ...], ...], str, Group]] = field(default_factory=list)

    def __post_init__(self) -> None:
        for group in self.groups:
            for term in group.zh:
                self._zh.append((normalise(term), group))
            for parts, text in zip(group.en, group.en_text, strict=True):
                self._en.append((parts, text, group))
        self._zh.sort(key=lambda item: -len(item[0]))
        self._en.sort(key=lambda item: -sum(len(p) for p in item[0]))

    def find(self, text: str) -> list[Hit]:
        """Every hit in normalised `text` (negated ones included, marked)."""
        hits: list[Hit] = []
        used_chars = [False] * len(text)
        for term, group in self._zh:
            start = text.find(term)
            while start != -1:
                end = start + len(term)
                if not (self.consume and any(used_chars[start:end])):
                    hits.append(Hit(group.key, group.weight, term, text[start:end], start, end, False))
                    if self.consume:
                        used_chars[start:end] = [True] * (end - start)
                start = text.find(term, start + 1)
        words = tokens(text)
        stems = [w.stem for w in words]
        used_words = [False] * len(words)
        for parts, term_text, group in self._en:
            for positions in _find_parts(stems, parts):
                if self.consume and any(used_words[i] for i in positions):
                    continue
                first, last = min(positions), max(positions)
                start, end = words[first].start, words[last].end
                hits.append(Hit(group.key, group.weight, term_text, text[start:end], start, end, False))
                if self.consume:
                    for i in positions:
                        used_words[i] = True
        spans = [(h.start, h.end) for h in hits]
        return [
            Hit(h.key, h.weight, h.term, h.surface, h.start, h.end, self._negated(text, words, h, spans))
            for h in hits
        ]

    def _negated(self, text: str, words: list[Token], hit: Hit, spans: list[tuple[int, int]]) -> bool:
        if _CJK.search(hit.surface):
            return self._zh_negated(text, hit.start, spans)
        return self._en_negated(words, hit.start, spans)

    def _zh_negated(self, text: str, start: int, spans: list[tuple[int, int]]) -> bool:
        neg = self.negation
        clause = max(
            (text.rfind(b, 0, start) + len(b) for b in neg.zh_breaks if text.rfind(b, 0, start) != -1),
            default=0,
        )
        lo = max(clause, start - neg.zh_window - max(len(c) for c in neg.zh_cues))
        for cue in neg.zh_cues:
            pos = text.find(cue, lo, start)
            while pos != -1:
                cue_end = pos + len(cue)
                if (
                    cue_end <= start
                    and start - cue_end <= neg.zh_window
                    and not any(
                        text.startswith(p, pos) or _inside_pseudo(text, pos, p) for p in neg.zh_pseudo
                    )
                    and not any(s <= pos < e for s, e in spans)
                ):
                    return True
                pos = text.find(cue, pos + 1, start)
        return False

    def _en_negated(self, words: list[Token], start: int, spans: list[tuple[int, int]]) -> bool:
        neg = self.negation
        index = next((i for i, w in enumerate(words) if w.start == start), None)
        if index is None:
            return False
        for back in range(1, neg.en_window + 1):
            i = index - back
            if i < 0 or words[i + 1].after_break:
                return False
            word = words[i]
            if word.stem in neg.en_breaks:
                return False
            if word.stem in neg.en_cues and not any(s <= word.start < e for s, e in spans):
                following = words[i + 1].stem if i + 1 < len(words) else ""
                return (word.stem, following) not in _EN_PSEUDO
        return False


_EN_PSEUDO = {
    ("not", "sur"),
    ("not", "certain"),
    ("don't", "know"),
    ("doesn't", "know"),
    ("no", "idea"),
    ("not", "only"),
    ("not", "just"),
    ("no", "matter"),
}


def _inside_pseudo(text: str, pos: int, pseudo: str) -> bool:
    """Whether the cue at `pos` is part of the pseudo-negation `pseudo` starting a little before it
    ("也没" / "都不" style words whose cue is not their first character)."""
    for offset in range(1, len(pseudo)):
        if pos - offset >= 0 and text.startswith(pseudo, pos - offset):
            return True
    return False


def _find_parts(stems: list[str], parts: tuple[tuple[str, ...], ...]) -> list[list[int]]:
    """The word positions of each occurrence of `parts` (all parts within the window)."""

    def occurrences(seq: tuple[str, ...]) -> list[int]:
        n = len(seq)
        return [i for i in range(len(stems) - n + 1) if tuple(stems[i : i + n]) == seq]

    first = occurrences(parts[0])
    if len(parts) == 1:
        return [list(range(i, i + len(parts[0]))) for i in first]
    found: list[list[int]] = []
    rest = [occurrences(p) for p in parts[1:]]
    for i in first:
        positions = list(range(i, i + len(parts[0])))
        for part, places in zip(parts[1:], rest, strict=True):
            near = [j for j in places if abs(j - i) <= _EN_WINDOW and j not in positions]
            if not near:
                break
            j = min(near, key=lambda j: abs(j - i))
            positions.extend(range(j, j + len(part)))
        else:
            found.append(sorted(positions))
    return found


@dataclass(frozen=True)
class RedFlag:
    code: str
    label: dict[str, str]
    advice: dict[str, str]
    alternatives: tuple[tuple[str, ...], ...]  # any alternative whose groups (keys) all match


@dataclass
class Lexicon:
    version: str
    fallback_centres: tuple[str, ...]
    centres: dict[str, list[str]]  # centre code -> its clinic codes, in lexicon order
    classify: Matcher
    flags: Matcher
    red_flags: tuple[RedFlag, ...]


def _group(key: str, entry: dict[str, Any]) -> Group:
    en_text = tuple(entry.get("en", ()))
    return Group(
        key=key,
        weight=float(entry.get("w", 1.0)),
        zh=tuple(entry.get("zh", ())),
        en=tuple(english_term(t) for t in en_text),
        en_text=en_text,
    )


def build(raw: dict[str, Any]) -> Lexicon:
    neg_raw = raw["negation"]
    negation = Negation(
        zh_cues=tuple(neg_raw["zh_cues"]),
        zh_pseudo=tuple(neg_raw["zh_pseudo"]),
        zh_breaks=tuple(neg_raw["zh_breaks"]),
        zh_window=int(neg_raw["zh_window"]),
        en_cues=frozenset(stem(w) for w in neg_raw["en_cues"]),
        en_breaks=frozenset(stem(w) for w in neg_raw["en_breaks"]),
        en_window=int(neg_raw["en_window"]),
    )
    groups: list[Group] = []
    for name, ctx in raw["contexts"].items():
        groups.append(_group(f"ctx:{name}", {"w": 0, **ctx}))
    centres: dict[str, list[str]] = {}
    for code, centre in raw["centres"].items():
        centres[code] = list(centre.get("clinics", {}))
        for i, entry in enumerate(centre.get("terms", ())):
            groups.append(_group(f"centre:{code}:{i}", entry))
        for clinic, body in centre.get("clinics", {}).items():
            for i, entry in enumerate(body.get("terms", ())):
                if "ctx" in entry:  # a reference to a context group, weighted for this clinic
                    continue
                groups.append(_group(f"clinic:{code}/{clinic}:{i}", entry))
    flag_groups: list[Group] = []
    red_flags = []
    for flag in raw["red_flags"]:
        alternatives = []
        for a, alt in enumerate(flag["any_of"]):
            keys = []
            for g, entry in enumerate(alt["all"]):
                key = f"flag:{flag['code']}:{a}:{g}"
                flag_groups.append(_group(key, entry))
                keys.append(key)
            alternatives.append(tuple(keys))
        red_flags.append(
            RedFlag(
                code=flag["code"],
                label={"en": flag["label_en"], "zh": flag["label_zh"]},
                advice={"en": flag["advice_en"], "zh": flag["advice_zh"]},
                alternatives=tuple(alternatives),
            )
        )
    return Lexicon(
        version=str(raw["version"]),
        fallback_centres=tuple(raw["fallback_centres"]),
        centres=centres,
        classify=Matcher(groups, negation, consume=True),
        flags=Matcher(flag_groups, negation, consume=False),
        red_flags=tuple(red_flags),
    )


def context_weights(raw: dict[str, Any]) -> dict[tuple[str, str], dict[str, float]]:
    """(centre, clinic) -> {context name: weight} from the clinics' {"ctx": …} entries."""
    out: dict[tuple[str, str], dict[str, float]] = {}
    for code, centre in raw["centres"].items():
        for clinic, body in centre.get("clinics", {}).items():
            for entry in body.get("terms", ()):
                if "ctx" in entry:
                    out.setdefault((code, clinic), {})[entry["ctx"]] = float(entry.get("w", 1.0))
    return out


@lru_cache(maxsize=1)
def raw_lexicon() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(LEXICON_PATH.read_text(encoding="utf-8"))
    return data


@lru_cache(maxsize=1)
def lexicon() -> Lexicon:
    """The packaged lexicon, compiled once per process."""
    return build(raw_lexicon())
