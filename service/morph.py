"""Russian tokenising and normal forms for the rule matcher (pymorphy3, cached per token)."""
from __future__ import annotations

import re
from functools import lru_cache
from typing import NamedTuple

NUM = "#число"
"""Pseudo normal form shared by every number: digits («54900») and number words («пятьдесят»)."""

AMOUNT = "#сумма"
"""Pseudo normal form of large numbers: digits ≥ 1000 («14500») and the words тысяча, миллион."""

NEGATORS_BEFORE = frozenset({"не", "ни", "нет", "без", "нету", "никакой", "ничуть", "нисколько"})
"""Words that negate a lemma hit up to two tokens later (inside one clause)."""

NEGATORS_AFTER = frozenset({"нет", "нету"})
"""Words that negate the genitive noun right before them: «жалоб нет», «проблем нету»."""

TOKEN_RE = re.compile(r"[^\W\d_]+(?:[-'][^\W\d_]+)*|[0-9]+(?:[.,][0-9]+)*")
"""A word: letters (with inner - or ') or a number (with inner . or ,); «5шт» is two words. No groups: findall gives words."""
BREAK_RE = re.compile(r"[.,!?;:()«»\"—–…]|\s-\s")
"""Punctuation between two words that starts a new clause."""
_NUMBER_WORDS = frozenset(
    "ноль один два три четыре пять шесть семь восемь девять десять одиннадцать двенадцать тринадцать "
    "четырнадцать пятнадцать шестнадцать семнадцать восемнадцать девятнадцать двадцать тридцать сорок "
    "пятьдесят шестьдесят семьдесят восемьдесят девяносто сто двести триста четыреста пятьсот шестьсот "
    "семьсот восемьсот девятьсот тысяча миллион полтора полторы".split())

_PARTICLES = frozenset({"то", "нибудь", "либо", "ка", "таки", "де"})
_morph = None


def _analyzer():
    """Return the shared pymorphy3 analyzer (created on first use, never at import)."""
    global _morph
    if _morph is None:
        import pymorphy3

        _morph = pymorphy3.MorphAnalyzer()
    return _morph


def fold(word: str) -> str:
    """Lower-case a word and replace ё with е."""
    return word.lower().replace("ё", "е")


class Token(NamedTuple):
    """One word of an utterance.

    :param surface: the word as written in the text
    :param norm: lower-cased, ё→е form
    :param forms: every possible normal form, the word itself, `=word` (exact match) and `#число` for numbers
    :param start: character offset in the utterance text
    :param end: character offset after the word
    :param clause: index of the clause (punctuation splits clauses); negation never crosses clauses
    """

    surface: str
    norm: str
    forms: frozenset
    start: int
    end: int
    clause: int


@lru_cache(maxsize=200_000)
def normal_forms(word: str) -> frozenset:
    """All possible normal forms of one word, ё→е folded, the folded word itself included."""
    w = fold(word)
    forms = {w, "=" + w}
    if w[:1].isdigit():
        forms.add(NUM)
        digits = w.replace(",", ".").split(".")[0]
        if digits.isdigit() and int(digits) >= 1000:
            forms.add(AMOUNT)
        return frozenset(forms)
    parts = w.split("-") if "-" in w and w.rsplit("-", 1)[1] not in _PARTICLES else [w]
    for part in parts + ([w] if len(parts) > 1 else []):
        for p in _analyzer().parse(part):
            nf = fold(p.normal_form)
            forms.add(nf)
            if "NUMR" in p.tag or nf in _NUMBER_WORDS:
                forms.add(NUM)
            if nf in ("тысяча", "миллион", "миллиард"):
                forms.add(AMOUNT)
    return frozenset(forms)


@lru_cache(maxsize=50_000)
def can_be_genitive(word: str) -> bool:
    """True when some parse of the word is a genitive noun/adjective («жалоб», «проблем»)."""
    return any("gent" in p.tag and ("NOUN" in p.tag or "ADJF" in p.tag) for p in _analyzer().parse(fold(word)))


@lru_cache(maxsize=50_000)
def dictionary_forms(word: str) -> tuple[bool, str | None]:
    """Check a rule lemma: (is it a known normal form, best suggested normal form or None)."""
    w = fold(word)
    parses = _analyzer().parse(w)
    known = [p for p in parses if p.is_known]
    if any(fold(p.normal_form) == w for p in known):
        return True, None
    if known:
        return False, fold(known[0].normal_form)
    return True, None  # unknown words (brands, slang) cannot be checked: accept them


@lru_cache(maxsize=200_000)
def word_forms(surface: str) -> tuple[str, frozenset]:
    """(folded word, its normal forms) for one surface word; cached per surface string."""
    norm = fold(surface)
    return norm, normal_forms(norm)


def tokenize(text: str) -> list[Token]:
    """Split an utterance into tokens with normal forms and clause numbers (layout() plus forms)."""
    new = tuple.__new__
    return [new(Token, (text[s.start:s.end], s.norm, normal_forms(s.norm), s.start, s.end, s.clause))
            for s in layout(text)]


class Slot(NamedTuple):
    """One word's place in an utterance: Token without the surface and normal forms (see layout)."""

    norm: str
    clause: int
    start: int
    end: int


def layout(text: str) -> list[Slot]:
    """Like tokenize (same words, norms, clauses, offsets) but without looking up normal forms: cheaper."""
    slots: list[Slot] = []
    clause = 0
    pos = 0
    search = BREAK_RE.search
    new = tuple.__new__
    for m in TOKEN_RE.finditer(text):
        start, end = m.span()
        if start - pos > 1 or (start > pos and text[pos] != " "):
            if search(text, pos, start):
                clause += 1
        slots.append(new(Slot, (m.group().lower().replace("ё", "е"), clause, start, end)))   # fold(), inlined
        pos = end
    return slots


def term_word(word: str) -> tuple[frozenset | None, str | None]:
    """Compile one rule word: (normal forms, None), or (None, prefix) for `слово*`, or {#число}."""
    w = fold(word.strip())
    if w in (NUM, AMOUNT):
        return frozenset({w}), None
    if w.startswith("=") and len(w) > 1:
        return frozenset({w}), None
    if w.endswith("*") and len(w) > 1:
        return None, w[:-1]
    forms = normal_forms(w)
    if w not in _NUMBER_WORDS and not w[:1].isdigit():
        forms = forms - {NUM}
    return forms, None


def phrase_words(phrase: str) -> list[tuple[frozenset | None, str | None]]:
    """Lemmatise a rule phrase word by word; see term_word for each word."""
    out = []
    for piece in phrase.split():
        if fold(piece) in (NUM, AMOUNT) or piece.endswith("*") or piece.startswith("="):
            out.append(term_word(piece))
            continue
        out.extend(term_word(t.norm) for t in tokenize(piece))
    return out


_TRANSPARENT_POS = frozenset({"ADVB", "PRCL", "ADJF", "ADJS", "NPRO", "PRED", "CONJ", "INTJ", "COMP", "NUMR"})


@lru_cache(maxsize=50_000)
def is_transparent(word: str) -> bool:
    """Can a negation reach across this word («не очень дорого», «не такой дорогой»)? Not across verbs or nouns."""
    parses = _analyzer().parse(fold(word))
    return bool(parses) and parses[0].tag.POS in _TRANSPARENT_POS


def is_negated(tokens: list, i: int, window: int = 2) -> bool:
    """True when token i is negated (tokens: Token or Slot items; only .norm and .clause are used).

    не/ни/нет/без right before the word, or up to `window` tokens before when the words in between are
    adverbs, particles, pronouns or adjectives («не очень дорого»); or «X нет» after a genitive («жалоб нет»).
    Negation never crosses punctuation.
    """
    tok = tokens[i]
    for j in range(i - 1, max(-1, i - 1 - window), -1):
        if tokens[j].clause != tok.clause:
            break
        if tokens[j].norm in NEGATORS_BEFORE:
            return True
        if not is_transparent(tokens[j].norm):
            break
    if i + 1 < len(tokens):
        nxt = tokens[i + 1]
        if nxt.clause == tok.clause and nxt.norm in NEGATORS_AFTER and can_be_genitive(tok.norm):
            return True
    return False
