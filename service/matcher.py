"""Apply a compiled RuleSet to one call: utterances + call data (+ history) -> analysis dict."""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

from service import morph
from service.call_data import CallFacts
from service.rule_model import Group, Rule, Script, Term

Hit = tuple  # (utterance index, first token, end token)


class _Utt:
    """One utterance: its words now; offsets, clauses and full tokens only when a rule needs them."""

    __slots__ = ("speaker", "start", "end", "text", "words", "entries", "_tokens", "_layout")

    def __init__(self, u):
        self.speaker, self.start, self.end, self.text = u.speaker, float(u.start_s), float(u.end_s), u.text or ""
        self.words = morph.TOKEN_RE.findall(self.text)
        self.entries: list = []     # per word: _word_entry() (filled by Context)
        self._tokens = None
        self._layout = None

    @property
    def layout(self) -> list:
        """Per word: (folded word, clause, start, end) — what morph.tokenize gives, without normal forms."""
        if self._layout is None:
            self._layout = morph.layout(self.text)
        return self._layout

    @property
    def tokens(self) -> list:
        """morph.tokenize(text), computed on first use (same words, in the same order, as `words`)."""
        if self._tokens is None:
            self._tokens = morph.tokenize(self.text)
        return self._tokens


def _word_entry(surface: str, vocabulary, prefixes: tuple) -> tuple:
    """(forms the rules look up, rule prefixes the word starts with) of one surface word; () when neither."""
    norm, forms = morph.word_forms(surface)
    looked_up = tuple(forms if vocabulary is None else forms & vocabulary)
    starts = tuple(p for p in prefixes if norm.startswith(p))
    return (looked_up, starts) if looked_up or starts else ()


class Context:
    """Per-call state: tokenised utterances, an inverted index of normal forms and results so far."""

    def __init__(self, utterances, call: Mapping, history, *, ignore_call: bool = False, vocabulary=None,
                 prefixes: tuple = (), cache: dict | None = None):
        cache = {} if cache is None else cache
        if len(cache) > 300_000:
            cache.clear()
        self.utts = [_Utt(u) for u in utterances]
        self.index: dict[str, list] = {}
        self._prefix: dict = {p: [] for p in prefixes}
        index, by_prefix, get = self.index, self._prefix, cache.get
        for ui, u in enumerate(self.utts):
            entries = u.entries
            for ti, surface in enumerate(u.words):
                entry = get(surface)
                if entry is None:
                    entry = cache[surface] = _word_entry(surface, vocabulary, prefixes)
                entries.append(entry)
                if entry:
                    where = (ui, ti)
                    for form in entry[0]:
                        if form in index:
                            index[form].append(where)
                        else:
                            index[form] = [where]
                    for p in entry[1]:
                        by_prefix[p].append(where)
        self.present = frozenset(index)
        self.call_end = max((u.end for u in self.utts), default=0.0)
        self.facts = CallFacts(call or {}, self.utts, history)
        self.ignore_call = ignore_call
        self.fired: set[str] = set()
        self._allowed: dict = {}
        self._positions: dict = {}
        self._utts_of: dict = {}
        self._negated: dict = {}

    def allowed(self, speaker: str, within) -> list[bool]:
        """Per utterance: does it pass the speaker and time-window filter."""
        key = (speaker, within)
        res = self._allowed.get(key)
        if res is None:
            res = [(speaker == "any" or u.speaker == speaker) and self._in_window(u, within) for u in self.utts]
            self._allowed[key] = res
        return res

    def _in_window(self, u: _Utt, w) -> bool:
        if w is None:
            return True
        if w.first is not None and u.start >= w.first:
            return False
        if w.last is not None and u.end <= self.call_end - w.last:
            return False
        if w.start is not None and u.start < w.start:
            return False
        return not (w.end is not None and u.start >= w.end)

    def prefixed(self, prefix: str) -> list:
        """All (utterance, token) positions whose word starts with `prefix`."""
        res = self._prefix.get(prefix)
        if res is None:
            res = sorted((ui, ti) for ui, u in enumerate(self.utts) for ti, w in enumerate(u.words)
                         if morph.fold(w).startswith(prefix))
            self._prefix[prefix] = res
        return res

    def positions(self, forms, prefix) -> list:
        """Positions of tokens matching a compiled word (normal forms or a prefix); memoised per call."""
        if prefix is not None:
            return self.prefixed(prefix)
        res = self._positions.get(forms)
        if res is None:
            index = self.index
            hit = [f for f in forms if f in index]
            if not hit:
                res = []
            elif len(hit) == 1:
                res = index[hit[0]]
            else:
                res = sorted({p for f in hit for p in index[f]})
            self._positions[forms] = res
        return res

    def utterances_of(self, word) -> frozenset:
        """Indices of the utterances that contain a compiled word (forms, prefix); memoised per call."""
        res = self._utts_of.get(word)
        if res is None:
            forms, prefix = word
            if prefix is not None:
                res = frozenset(ui for ui, _ in self.prefixed(prefix))
            else:
                index = self.index
                res = frozenset(ui for f in forms if f in index for ui, _ in index[f])
            self._utts_of[word] = res
        return res

    def negated_at(self, ui: int, ti: int) -> bool:
        """morph.is_negated for token ti of utterance ui; memoised per call (many rules ask about the same word)."""
        key = (ui, ti)
        res = self._negated.get(key)
        if res is None:
            res = self._negated[key] = morph.is_negated(self.utts[ui].layout, ti)
        return res

    def word_at(self, ui: int, ti: int, word) -> bool:
        """Does token ti of utterance ui match a compiled word (forms, prefix)?"""
        forms, prefix = word
        if prefix is not None:
            return morph.fold(self.utts[ui].words[ti]).startswith(prefix)
        entry = self.utts[ui].entries[ti]
        return bool(entry) and not forms.isdisjoint(entry[0])


def _phrase_end(ctx: Context, ui: int, i: int, words, k: int, gap: int, length: int) -> int | None:
    """Token index after the phrase if words k.. match from token i of utterance ui (up to `gap` skipped words each)."""
    if k == len(words):
        return i
    for j in range(i, min(length, i + gap + 1)):
        if ctx.word_at(ui, j, words[k]):
            end = _phrase_end(ctx, ui, j + 1, words, k + 1, gap, length)
            if end is not None:
                return end
    return None


def lemma_hits(term: Term, ctx: Context, *, negated: str | None = None) -> list[Hit]:
    """Hits of a lemmas term, filtered by speaker, window and negation."""
    seen = set()
    ok = None
    present = term.lemmas & ctx.present
    if present:
        ok = ctx.allowed(term.speaker, term.within)
        index = ctx.index
        for lem in present:
            seen.update(p for p in index[lem] if ok[p[0]])
    for pre in term.prefixes:
        ps = ctx.prefixed(pre)
        if ps:
            if ok is None:
                ok = ctx.allowed(term.speaker, term.within)
            seen.update(p for p in ps if ok[p[0]])
    if not seen:
        return []
    mode = negated or term.negated
    if mode == "any":
        return [(ui, ti, ti + 1) for ui, ti in sorted(seen)]
    only = mode == "only"
    negated_at = ctx.negated_at
    return [(ui, ti, ti + 1) for ui, ti in sorted(seen) if negated_at(ui, ti) == only]


def phrase_hits(term: Term, ctx: Context) -> list[Hit]:
    """Hits of a phrases term (consecutive words inside one utterance, `max_gap` words allowed)."""
    gate_forms, by_form, always = term.gate
    candidates = set(always)
    for f in gate_forms & ctx.present:
        candidates.update(by_form[f])
    if not candidates:
        return []
    ok = ctx.allowed(term.speaker, term.within)
    hits = set()
    present, positions, utts, gap = ctx.present, ctx.positions, ctx.utts, term.max_gap
    for pi in candidates:
        _text, words, order = term.phrases[pi]
        for i in order:     # every word must occur somewhere in the call
            forms, prefix = words[i]
            if forms.isdisjoint(present) if prefix is None else not ctx.prefixed(prefix):
                break
        else:
            n = len(words)
            if gap == 0:    # anchor on the most specific word, check its neighbours
                k = order[0]
                for ui, ti in positions(*words[k]):
                    start = ti - k
                    if ok[ui] and start >= 0 and start + n <= len(utts[ui].words) and \
                            all(j == k or ctx.word_at(ui, start + j, words[j]) for j in range(n)):
                        hits.add((ui, start, start + n))
                continue
            common = frozenset.intersection(*map(ctx.utterances_of, words))   # utterances with every word
            for ui, ti in positions(*words[0]):
                if ok[ui] and ui in common:
                    end = _phrase_end(ctx, ui, ti + 1, words, 1, gap, len(utts[ui].words))
                    if end is not None:
                        hits.add((ui, ti, end))
    return sorted(hits)


def eval_term(term: Term, ctx: Context) -> tuple[bool, list]:
    """(does the term hold, its evidence hits)."""
    op = term.op
    if op == "lemmas":
        hits = lemma_hits(term, ctx)
        return len(hits) >= term.min_count, hits
    if op == "phrases":
        hits = phrase_hits(term, ctx)
        return len(hits) >= term.min_count, hits
    if op == "tags":
        return any(t in ctx.fired for t in term.tags), []
    results = [eval_term(t, ctx) for t in term.children]
    if op == "none":
        return not any(r[0] for r in results), []
    hits = [h for r in results if r[0] for h in r[1]]
    if op == "all":
        return all(r[0] for r in results) and (term.min_count <= 1 or len(hits) >= term.min_count), hits
    return any(r[0] for r in results) and (term.min_count <= 1 or len(hits) >= term.min_count), hits


def eval_rule(rule: Rule, ctx: Context) -> tuple[bool, list]:
    """(does the rule fire, its hits): call conditions, then any, all, none, min_count."""
    if not rule.enabled:
        return False, []
    if rule.call is not None and not ctx.ignore_call and not ctx.facts.matches(rule.call):
        return False, []
    hits: list = []
    if rule.any:
        results = [eval_term(t, ctx) for t in rule.any]
        if not any(r[0] for r in results):
            return False, []
        hits.extend(h for r in results if r[0] for h in r[1])
    for t in rule.all:
        ok, h = eval_term(t, ctx)
        if not ok:
            return False, []
        hits.extend(h)
    for t in rule.none:
        if eval_term(t, ctx)[0]:
            return False, []
    if rule.min_count > 1 and len(set(hits)) < rule.min_count:
        return False, []
    return True, hits


def _intensified(tokens, ti: int, intensifiers) -> bool:
    for j in range(ti - 1, max(-1, ti - 3), -1):
        if tokens[j].clause != tokens[ti].clause:
            return False
        if not tokens[j].forms.isdisjoint(intensifiers):
            return True
    return False


def eval_lexicon(group: Group, ctx: Context) -> tuple[Rule, list, dict]:
    """Score a lexicon group's poles; returns (chosen pole or default, its hits, scores)."""
    scores = {p.id: 0.0 for p in group.rules}
    contrib: dict[str, list] = {p.id: [] for p in group.rules}
    for pole in group.rules:
        if not pole.enabled:
            continue
        for term in pole.any:
            if term.op == "lemmas":
                pairs = [(h, ctx.negated_at(h[0], h[1])) for h in lemma_hits(term, ctx, negated="any")]
            elif term.op == "phrases":
                pairs = [(h, False) for h in phrase_hits(term, ctx)]
            else:
                ok, hs = eval_term(term, ctx)
                pairs = [(h, False) for h in hs]
            for hit, neg in pairs:
                target = (pole.opposite if neg else pole.id)
                if target not in scores or (neg and term.negated == "skip" and pole.opposite is None):
                    continue
                w = term.weight
                if group.intensifiers and _intensified(ctx.utts[hit[0]].tokens, hit[1], group.intensifiers):
                    w *= group.intensity
                scores[target] += w
                contrib[target].append(hit)
    best = None
    for pole in group.rules:
        if pole.enabled and scores[pole.id] >= pole.min_score and (best is None or scores[pole.id] > scores[best.id]):
            best = pole
    if best is None:
        return group.default, [], scores
    return best, contrib[best.id], scores


class Evaluation:
    """Raw results of one run: chosen values per group, fired rules, hits, checkpoint results."""

    def __init__(self):
        self.chosen: dict[str, object] = {}
        self.raw: dict[str, bool] = {}
        self.hits: dict[str, list] = {}
        self.script: Script | None = None
        self.checkpoints: dict[str, bool] = {}


def evaluate(ruleset, utterances: Sequence, call: Mapping, *, history: Callable | None = None,
             ignore_call: bool = False, full: bool = False) -> tuple[Evaluation, Context]:
    """Run the evaluation plan. `full` also evaluates classification rules after the first match."""
    ctx = Context(utterances, call, history, ignore_call=ignore_call, vocabulary=getattr(ruleset, "vocabulary", None),
                  prefixes=getattr(ruleset, "prefixes", ()), cache=getattr(ruleset, "word_cache", None))
    ev = Evaluation()
    for kind, node in ruleset.plan:
        if kind == "rule":
            ok, hits = eval_rule(node, ctx)
            ev.raw[node.id] = ok
            if ok:
                ctx.fired.add(node.id)
                ev.hits[node.id] = hits
                ev.chosen.setdefault(node.group, []).append(node.id)
            else:
                ev.chosen.setdefault(node.group, [])
        elif kind == "group" and node.kind == "lexicon":
            pole, hits, _scores = eval_lexicon(node, ctx)
            ev.chosen[node.id] = pole.id
            ctx.fired.add(pole.id)
            ev.raw[pole.id] = True
            ev.hits[pole.id] = hits
        elif kind == "group":
            chosen = None
            for rule in node.rules:
                if chosen is not None and not full:
                    break
                ok, hits = eval_rule(rule, ctx)
                ev.raw[rule.id] = ok
                if ok and chosen is None:
                    chosen = rule
                    ev.hits[rule.id] = hits
            chosen = chosen or node.default
            ev.chosen[node.id] = chosen.id
            ctx.fired.add(chosen.id)
        elif kind == "script":
            _run_script(node, ctx, ev)
    return ev, ctx


def _after(cp: Rule, hits: list, anchor: tuple[bool, list]) -> tuple[bool, list]:
    """Apply `after:` to a checkpoint that holds: keep only hits after the anchor checkpoint's first hit."""
    anchor_ok, anchor_hits = anchor
    if not anchor_ok:
        return False, []
    if not anchor_hits or not hits:     # nothing to order (conditions without words): the anchor passing is enough
        return True, hits
    ui, _t0, t1 = min(anchor_hits)
    later = [h for h in hits if (h[0], h[1]) >= (ui, t1)]
    if not later or len(set(later)) < cp.min_count:
        return False, []
    return True, later


def eval_checkpoints(script: Script, ctx: Context) -> dict[str, tuple[bool, list]]:
    """(passed, hits) of every enabled checkpoint; a checkpoint named by `after:` is evaluated before its user."""
    by_id = {cp.id: cp for cp in script.checkpoints}
    results: dict[str, tuple[bool, list]] = {}

    def run(cp: Rule, stack: tuple) -> tuple[bool, list]:
        if cp.id in results:
            return results[cp.id]
        if not cp.enabled or cp.id in stack:     # cycles are rejected by the loader (R208); never loop here
            return False, []
        ok, hits = eval_rule(cp, ctx)
        if ok and cp.after is not None:
            anchor = by_id.get(cp.after)
            ok, hits = _after(cp, hits, run(anchor, stack + (cp.id,)) if anchor is not None else (False, []))
        if ok:
            ctx.fired.add(cp.id)
        results[cp.id] = (ok, hits)
        return ok, hits

    for cp in script.checkpoints:
        if cp.enabled:
            run(cp, ())
    return results


def _run_script(script: Script, ctx: Context, ev: Evaluation) -> None:
    if ev.script is not None or not script.enabled:
        return
    if script.call is not None and not ctx.ignore_call and not ctx.facts.matches(script.call):
        return
    ev.script = script
    results = eval_checkpoints(script, ctx)
    for cp in script.checkpoints:
        if not cp.enabled:
            continue
        ok, hits = results[cp.id]
        ev.raw[cp.id] = ok
        ev.checkpoints[cp.id] = ok
        if ok:
            ev.hits[cp.id] = hits


def _hit_dict(rule_id: str, group: str, hit, ctx: Context) -> dict:
    ui, t0, t1 = hit
    u = ctx.utts[ui]
    return {"rule_id": rule_id, "group": group, "speaker": u.speaker, "start_s": round(u.start, 2),
            "text": u.text, "matched": u.text[u.layout[t0][2]:u.layout[t1 - 1][3]]}


def analyse(ruleset, utterances: Sequence, call: Mapping, *, history: Callable | None = None) -> dict:
    """Tag one call. Returns the JSON-serialisable `analysis` object (see rules/README.md).

    :param ruleset: a RuleSet from service.ruleset.load_ruleset
    :param utterances: service.models.Utterance items (speaker, start_s, end_s, text)
    :param call: the canonical call record (all keys optional)
    :param history: callable(client_phone, days) -> number of earlier calls, or None
    """
    ev, ctx = evaluate(ruleset, utterances, call, history=history)
    groups, tags, hits = {}, [], []
    for group in ruleset.groups:
        value = ev.chosen.get(group.id, None if group.exclusive else [])
        if group.exclusive:
            value = value or group.default.id
            ids = [value]
        else:
            ids = list(value or [])
        groups[group.id] = value if group.exclusive else ids
        for rid in ids:
            tags.append(ruleset.rules[rid].label)
            hits.extend(_hit_dict(rid, group.id, h, ctx) for h in sorted(set(ev.hits.get(rid, ()))))
    score = None
    if ev.script is not None:
        total = sum(cp.weight for cp in ev.script.checkpoints if cp.enabled)
        passed = sum(cp.weight for cp in ev.script.checkpoints if ev.checkpoints.get(cp.id))
        score = round(passed / total, 4) if total else None
        for cp in ev.script.checkpoints:
            if ev.checkpoints.get(cp.id):
                hits.extend(_hit_dict(cp.id, ev.script.id, h, ctx) for h in sorted(set(ev.hits.get(cp.id, ()))))
    return {"rules_version": ruleset.version, "groups": groups, "checkpoints": dict(ev.checkpoints),
            "script_id": ev.script.id if ev.script else None, "script_score": score, "tags": tags, "hits": hits}
