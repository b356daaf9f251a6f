"""The CITES taxonomy as Species+ gives it: accepted names, their synonyms, higher taxa and
current CITES listing, for screening (warnings only).

EPIX bundles the Species+ ``taxon_concepts`` answers in ``data/speciesplus`` and reads, after
them, every ``*.json`` in ``EPIX_SPECIESPLUS_DIR``: answers of ``GET /api/v1/taxon_concepts``
an operator downloaded with their own token. Only accepted concepts (``name_status`` A) are
kept, and only active ones (Species+ marks a deleted concept ``active: false``); Species+
lists each one's synonyms with it. A name the node does not hold is not checked:
no warning is not a clearance.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from epix.permits.sapi_dates import HIGHER_RANKS, RANKS, ReferenceDataError, taxon_key
from epix.settings import get_settings

BUNDLED = Path(__file__).resolve().parent / "data" / "speciesplus"
# What ``cites_listing`` may hold, split at "/": the appendices and NC (not listed).
LISTING_PARTS = frozenset({"I", "II", "III", "NC"})
# Ranks box 7 names as a whole with "spp." ('Trochilidae spp.', 'Dalbergia spp.'), or names
# one unidentified species in with "sp." ('Dalbergia sp.').
GROUP_RANKS = frozenset({"GENUS", *HIGHER_RANKS})
# "spp.": the group's species; "sp.": one of them, not identified further. Either way the
# specimen is within the group, so the measures on it and the taxa above it apply, and no
# measure on one species of it does (EPIX cannot tell which species it is).
GROUP_MARKS = (" spp.", " spp", " sp.", " sp")


@dataclass(frozen=True, slots=True)
class TaxonConcept:
    """One accepted Species+ taxon concept."""

    id: int
    full_name: str
    rank: str
    listing: str | None  # Species+ ``cites_listing`` ("I/II", "NC"); None: not given
    appendices: frozenset[str]  # those the listing names ("I/II": I and II; "NC": none)
    within: frozenset[str]  # itself and the taxa above it, as ``taxon_key`` gives them
    synonyms: tuple[str, ...]
    synonym_ids: frozenset[int] = frozenset()  # the Species+ ids of those synonyms


@dataclass(frozen=True, slots=True)
class Naming:
    """What the taxonomy makes of one box 7 name."""

    concept: TaxonConcept
    synonym: bool  # box 7 names a synonym of ``concept``, or a subspecies of one
    exact: bool  # False: a subspecies or variety of ``concept`` the node does not hold apart
    # What box 7 is screened under when not as written (a synonym's subspecies under the
    # accepted species' name, a variety written without "var." under its full name).
    accepted: str | None = None
    ids: frozenset[int] = frozenset()  # ``Taxonomy.lineage`` of ``concept``

    @property
    def screened_name(self) -> str | None:
        """The accepted name box 7 stands for, when box 7 names a synonym (or a subspecies
        written under a synonym of its species) or a variety without "var."."""
        if self.accepted is not None:
            return self.accepted
        return self.concept.full_name if self.synonym else None

    @property
    def within(self) -> frozenset[str]:
        """The taxa the named specimen belongs to, itself included (``taxon_key``)."""
        return self.concept.within


def screened_as(name: str, naming: Naming | None) -> tuple[str, frozenset[str], frozenset[int]]:
    """The name box 7's ``name`` is screened under (the accepted name for a synonym), the taxa
    it belongs to and their Species+ ids (none known for a name the node does not hold):
    screening and the annual report's quota use count a line under the same quotas."""
    if naming is None:
        return name, frozenset(), frozenset()
    return naming.screened_name or name, naming.within, naming.ids


def _text(value: object, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{field} {value!r} is not a name")
    return " ".join(value.split())


def _concept(entry: object) -> TaxonConcept | None:
    """One entry of an answer as a TaxonConcept, None for a name that is not accepted, or
    ValueError naming the malformed field."""
    if not isinstance(entry, dict):
        raise ValueError("is not an object")
    status = entry.get("name_status")
    if not isinstance(status, str):
        raise ValueError(f"name_status {status!r} is not a Species+ name status")
    concept_id = entry.get("id")
    if not isinstance(concept_id, int) or isinstance(concept_id, bool):
        raise ValueError(f"id {concept_id!r} is not a number")
    if status != "A" or entry.get("active") is False:
        return None  # a synonym (its accepted concept lists it) or a deleted concept
    rank = str(entry.get("rank", "")).upper()
    if rank not in RANKS:
        raise ValueError(f"rank {entry.get('rank')!r} is not a taxonomic rank")
    listing = entry.get("cites_listing")
    if listing is not None and not isinstance(listing, str):
        raise ValueError(f"cites_listing {listing!r} is not text")
    if listing is not None and listing.strip():
        listing = listing.strip().upper()
        if not set(listing.split("/")) <= LISTING_PARTS:
            raise ValueError(f"cites_listing {listing!r} is not a list of I, II, III and NC")
    else:
        listing = None
    higher = entry.get("higher_taxa") or {}
    if not isinstance(higher, dict):
        raise ValueError("higher_taxa is not an object")
    synonyms = entry.get("synonyms") or []
    if not isinstance(synonyms, list) or not all(isinstance(s, dict) for s in synonyms):
        raise ValueError("synonyms is not a list of objects")
    full_name = _text(entry.get("full_name"), "full_name")
    synonym_ids = [s["id"] for s in synonyms if s.get("id") is not None]
    for synonym_id in synonym_ids:
        if not isinstance(synonym_id, int) or isinstance(synonym_id, bool):
            raise ValueError(f"synonyms.id {synonym_id!r} is not a number")
    return TaxonConcept(
        id=concept_id,
        full_name=full_name,
        rank=rank,
        listing=listing,
        appendices=frozenset((listing or "").split("/")) - {"NC"},
        within=frozenset(
            taxon_key(_text(name, f"higher_taxa.{level}"))
            for level, name in higher.items()
            if name is not None
        )
        | {taxon_key(full_name)},
        synonyms=tuple(_text(s.get("full_name"), "synonyms.full_name") for s in synonyms),
        synonym_ids=frozenset(synonym_ids),
    )


def _answer(path: Path) -> list[TaxonConcept]:
    """The accepted concepts of one Species+ answer; ReferenceDataError names the file and
    the entry that is malformed."""
    try:
        answer: Any = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ReferenceDataError(f"{path} cannot be read: {exc.strerror}.") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise ReferenceDataError(f"{path} is not a readable JSON file: {exc}.") from None
    entries = answer.get("taxon_concepts") if isinstance(answer, dict) else None
    if not isinstance(entries, list):
        raise ReferenceDataError(
            f"{path} is not a Species+ taxon_concepts answer (no taxon_concepts list)."
        )
    concepts = []
    for position, entry in enumerate(entries):
        try:
            concept = _concept(entry)
        except ValueError as exc:
            found = entry.get("id") if isinstance(entry, dict) else None
            named = f" (id {found})" if isinstance(found, int) else ""
            raise ReferenceDataError(f"{path}: taxon_concepts[{position}]{named}: {exc}.") from None
        if concept is not None:
            concepts.append(concept)
    return concepts


class Taxonomy:
    """Concepts indexed by name (``taxon_key``), synonyms included, and by Species+ id, so a
    permit line costs a dictionary look-up or two."""

    __slots__ = ("_by_id", "_by_name", "_lineage", "_shared", "_unmarked")

    def __init__(self, concepts: Iterable[TaxonConcept]) -> None:
        by_id = {concept.id: concept for concept in concepts}  # a later answer replaces one
        by_name: dict[str, tuple[TaxonConcept, bool]] = {}
        shared: dict[str, dict[int, TaxonConcept]] = {}
        for concept in by_id.values():
            for synonym in concept.synonyms:
                key = taxon_key(synonym)
                first = by_name.setdefault(key, (concept, True))[0]
                if first is not concept:
                    shared.setdefault(key, {first.id: first})[concept.id] = concept
        for concept in by_id.values():  # an accepted name is never read as another's synonym
            by_name[taxon_key(concept.full_name)] = (concept, False)
        # A synonym of several accepted taxa (a name split between them) stands for none of
        # them: reading it as one could lift Appendix I rules the other's Parties still apply.
        self._shared = {
            key: tuple(sorted(concept.full_name for concept in concepts.values()))
            for key, concepts in shared.items()
            if by_name[key][1]
        }
        for key in self._shared:
            del by_name[key]
        self._by_id: Mapping[int, TaxonConcept] = by_id
        self._by_name = by_name
        self._lineage = _lineages(by_id, by_name)
        self._unmarked = _unmarked_varieties(by_id.values(), by_name.keys() | self._shared.keys())

    def __len__(self) -> int:
        return len(self._by_id)

    def concept(self, concept_id: int) -> TaxonConcept | None:
        return self._by_id.get(concept_id)

    def lineage(self, concept: TaxonConcept) -> frozenset[int]:
        """The Species+ ids a listing of ``concept`` may carry: its own and its synonyms', and
        those of the taxa above it (genus, species of a subspecies, ``within``) the answers
        hold. A synonym id listed under several taxa stands for none of them."""
        return self._lineage.get(concept.id, frozenset())

    def accepted_names(self, name: str) -> tuple[str, ...]:
        """The accepted names box 7's ``name``, the species part of a subspecies, or the group
        'Genus spp.' and 'Genus sp.' name, is a synonym of when it is one of several
        (``naming`` then holds it as no taxon: it is screened as written); else ()."""
        if not self._shared:  # the usual case: no answer lists a synonym twice
            return ()
        key = taxon_key(name)
        found = self._shared.get(key)
        if found is None and key.endswith(GROUP_MARKS):
            found = self._shared.get(key.rsplit(" ", 1)[0])
        if found is None and key.count(" ") > 1:
            found = self._shared.get(" ".join(key.split()[:2]))
        return found or ()

    def naming(self, name: str) -> Naming | None:
        """What box 7's ``name`` is: a concept or one of its synonyms (a genus or higher taxon
        also as a whole, 'Trochilidae spp.', or one unidentified species in it, 'Dalbergia
        sp.'), else a subspecies or variety of a species the node holds (for its higher taxa
        only), or of a synonym of one (screened under the accepted species' name with its own
        epithets), else None."""
        key = taxon_key(name)
        found = self._by_name.get(key)
        if found is None and key.endswith(GROUP_MARKS):
            found = self._group(key)
        if found is not None:
            concept, synonym = found
            return Naming(concept, synonym, exact=True, ids=self.lineage(concept))
        if key.count(" ") > 1:
            variety = self._unmarked.get(key)
            if variety is not None:  # 'Mammillaria carmenae rubrispina'
                ids = self.lineage(variety)
                return Naming(variety, False, exact=True, accepted=variety.full_name, ids=ids)
            words = key.split()
            species = self._by_name.get(" ".join(words[:2]))
            if species is None:
                return None
            concept, synonym = species
            ids = self.lineage(concept)
            if not synonym:
                return Naming(concept, synonym=False, exact=False, ids=ids)
            if concept.rank == "SPECIES":  # 'Loxodonta cyclotis pumilio': a recombination
                accepted = " ".join((concept.full_name, *words[2:]))
                return Naming(concept, synonym=True, exact=False, accepted=accepted, ids=ids)
        return None

    def _group(self, key: str) -> tuple[TaxonConcept, bool] | None:
        """The genus or higher taxon box 7's ``key`` names as a whole ('trochilidae spp.') or
        one unidentified species in ('platysternon sp.'), so the line meets the listings on
        that taxon and the taxa above it as its species would; else None."""
        found = self._by_name.get(key.rsplit(" ", 1)[0])
        return found if found is not None and found[0].rank in GROUP_RANKS else None


def _lineages(
    by_id: Mapping[int, TaxonConcept], by_name: Mapping[str, tuple[TaxonConcept, bool]]
) -> dict[int, frozenset[int]]:
    """``Taxonomy.lineage`` for every concept, built once: screening then matches a line's
    listings by id with one set look-up each."""
    listed: dict[int, int] = {}  # how many concepts list each synonym id
    for concept in by_id.values():
        for synonym_id in concept.synonym_ids:
            listed[synonym_id] = listed.get(synonym_id, 0) + 1
    own = {
        concept.id: frozenset(
            {concept.id} | {i for i in concept.synonym_ids if listed[i] == 1 and i not in by_id}
        )
        for concept in by_id.values()
    }
    lineages = {}
    for concept in by_id.values():
        words = taxon_key(concept.full_name).split()
        above = {*concept.within, words[0], " ".join(words[:2])} - {" ".join(words)}
        ids = set(own[concept.id])
        for name in above:
            found = by_name.get(name)
            if found is not None and not found[1]:  # an accepted taxon, never a synonym
                ids |= own[found[0].id]
        lineages[concept.id] = frozenset(ids)
    return lineages


def _unmarked_varieties(
    concepts: Iterable[TaxonConcept], names: Iterable[str]
) -> dict[str, TaxonConcept]:
    """The varieties by their name without "var." ('mammillaria carmenae rubrispina'), as box
    7 often writes them, where that name is no other taxon's or synonym's (``names``) and
    stands for one variety only."""
    taken = set(names)
    found: dict[str, TaxonConcept | None] = {}
    for concept in concepts:
        words = taxon_key(concept.full_name).split()
        if concept.rank == "VARIETY" and "var." in words:
            key = " ".join(word for word in words if word != "var.")
            if key not in taken:
                found[key] = None if key in found else concept
    return {key: concept for key, concept in found.items() if concept is not None}


def answer_files(operator_dir: Path | None) -> list[Path]:
    """The bundled ``taxon_concepts_*.json`` answers, then every ``*.json`` of the operator's
    directory, in name order (a later file's concept replaces an earlier one with its id)."""
    files = sorted(BUNDLED.glob("taxon_concepts_*.json"))
    if operator_dir is not None:
        if not operator_dir.is_dir():
            raise ReferenceDataError(f"EPIX_SPECIESPLUS_DIR {operator_dir} is not a directory.")
        files += sorted(operator_dir.glob("*.json"))
    return files


def load_taxonomy(paths: Iterable[Path]) -> Taxonomy:
    """The accepted concepts of these Species+ answers, indexed."""
    return Taxonomy(concept for path in paths for concept in _answer(path))


@cache
def taxonomy() -> Taxonomy:
    """The bundled Species+ answers and the operator's (``EPIX_SPECIESPLUS_DIR``), read once
    per process."""
    return load_taxonomy(answer_files(get_settings().speciesplus_dir))
