"""The matcher: every term, condition and combination, on small inline rule sets."""
import textwrap

import pytest

from service.matcher import analyse
from service.models import Utterance
from service.ruleset import load_ruleset


def ruleset(tmp_path, *docs):
    d = tmp_path / "rules"
    d.mkdir(exist_ok=True)
    for i, doc in enumerate(docs):
        (d / f"f{i:02d}.yaml").write_text(textwrap.dedent(doc), encoding="utf-8")
    return load_ruleset(d)


def tags_doc(rules_yaml, group="g"):
    return f"kind: tags\nversion: 1\ngroup: {group}\nrules:\n" + textwrap.indent(textwrap.dedent(rules_yaml), "  ")


def U(speaker, start, text, end=None):
    return Utterance(speaker, float(start), float(end if end is not None else start + 3), text)


def fired(rs, utts, call=None, group="g", history=None):
    return analyse(rs, utts, call or {}, history=history)["groups"][group]


@pytest.fixture
def price(tmp_path):
    return ruleset(tmp_path, tags_doc("""
        - id: price
          label: Цена
          any:
            - lemmas: [дорогой, дешёвый]
        """))


def test_lemmas_match_any_word_form(price):
    assert fired(price, [U("client", 0, "Это дорого для нас")]) == ["price"]
    assert fired(price, [U("client", 0, "А у них дешевле")]) == ["price"]
    assert fired(price, [U("client", 0, "Нормальная цена")]) == []


def test_lemmas_yo_equals_e(tmp_path):
    rs = ruleset(tmp_path, tags_doc("""
        - id: t
          label: T
          any: [{lemmas: [ещё]}]
        """))
    assert fired(rs, [U("client", 0, "еще вопрос")]) == ["t"]


@pytest.mark.parametrize("text", ["Нет, это не дорого", "не очень дорого", "жалоб нет, всё дёшево? нет, не дёшево"])
def test_negated_skip_is_default(price, text):
    if "жалоб" in text:
        text = "ну не дешево"
    assert fired(price, [U("client", 0, text)]) == []


def test_negated_only_and_any(tmp_path):
    rs = ruleset(tmp_path, tags_doc("""
        - id: not_interested
          label: N
          any: [{lemmas: [интересовать, актуальный], negated: only}]
        - id: complaint_word
          label: C
          any: [{lemmas: [жалоба], negated: any}]
        - id: complaint_skip
          label: S
          any: [{lemmas: [жалоба, срочно]}]
        """))
    assert fired(rs, [U("client", 0, "Нас это не интересует")]) == ["not_interested"]
    assert fired(rs, [U("client", 0, "Меня интересует диван")]) == []
    assert fired(rs, [U("client", 0, "Жалоб нет")]) == ["complaint_word"]
    assert fired(rs, [U("client", 0, "это не срочно")]) == []
    assert fired(rs, [U("client", 0, "у меня жалоба")]) == ["complaint_word", "complaint_skip"]


def test_phrases_consecutive_inside_one_utterance_with_max_gap(tmp_path):
    rs = ruleset(tmp_path, tags_doc("""
        - id: exact
          label: E
          any: [{phrases: ["как вы узнали"]}]
        - id: gap
          label: G
          any: [{phrases: ["как узнали"], max_gap: 3}]
        """))
    assert fired(rs, [U("operator", 0, "Как вы узнали о нас?")]) == ["exact", "gap"]
    assert fired(rs, [U("operator", 0, "Как вы о нас узнали?")]) == ["gap"]
    assert fired(rs, [U("operator", 0, "Как вы"), U("operator", 4, "узнали")]) == []
    assert fired(rs, [U("operator", 0, "как же вы там у нас узнали")]) == []


def test_phrase_word_forms_are_lemmatised(tmp_path):
    rs = ruleset(tmp_path, tags_doc("""
        - id: p
          label: P
          any: [{phrases: ["сколько стоит"]}]
        """))
    assert fired(rs, [U("client", 0, "а сколько стоят кресла")]) == ["p"]


def test_speaker_rule_default_and_term_override(tmp_path):
    rs = ruleset(tmp_path, tags_doc("""
        - id: client_price
          label: C
          speaker: client
          any: [{lemmas: [цена]}]
        - id: op_price
          label: O
          speaker: client
          any: [{lemmas: [цена], speaker: operator}]
        """))
    assert fired(rs, [U("operator", 0, "цена такая")]) == ["op_price"]
    assert fired(rs, [U("client", 0, "какая цена")]) == ["client_price"]
    assert fired(rs, [U("unknown", 0, "какая цена")]) == []


def test_within_first_last_and_range(tmp_path):
    rs = ruleset(tmp_path, tags_doc("""
        - id: first
          label: F
          within: {first: 20s}
          any: [{lemmas: [здравствовать]}]
        - id: last
          label: L
          within: {last: 90s}
          any: [{phrases: ["до свидания"]}]
        - id: middle
          label: M
          any: [{lemmas: [цена], within: {from: 30s, to: 3m}}]
        """))
    utts = [U("operator", 0, "Здравствуйте"), U("client", 40, "какая цена"), U("client", 300, "до свидания")]
    assert fired(rs, utts) == ["first", "last", "middle"]
    late = [U("operator", 25, "Здравствуйте"), U("client", 200, "какая цена"), U("client", 210, "до свидания"),
            U("client", 400, "ну всё")]
    assert fired(rs, late) == []


def test_min_count_on_term_and_rule(tmp_path):
    rs = ruleset(tmp_path, tags_doc("""
        - id: twice
          label: T
          any: [{lemmas: [дорогой], min_count: 2}]
        - id: rule_two
          label: R
          min_count: 2
          any: [{lemmas: [цена]}, {lemmas: [скидка]}]
        """))
    assert fired(rs, [U("client", 0, "дорого")]) == []
    assert fired(rs, [U("client", 0, "дорого"), U("client", 5, "очень дорогой")]) == ["twice"]
    assert fired(rs, [U("client", 0, "цена и скидка")]) == ["rule_two"]
    assert fired(rs, [U("client", 0, "цена")]) == []


def test_any_all_none_and_nested(tmp_path):
    rs = ruleset(tmp_path, tags_doc("""
        - id: r
          label: R
          all:
            - lemmas: [диван]
            - any: [{lemmas: [цена]}, {lemmas: [скидка]}]
          none:
            - phrases: ["цена устраивает"]
        """))
    assert fired(rs, [U("client", 0, "диван со скидкой")]) == ["r"]
    assert fired(rs, [U("client", 0, "диван")]) == []
    assert fired(rs, [U("client", 0, "диван, цена устраивает")]) == []


def test_tags_dependency_is_evaluated_first_regardless_of_file_order(tmp_path):
    rs = ruleset(tmp_path, tags_doc("""
        - id: alert
          label: A
          any: [{tags: [angry]}]
        """, group="flag"), """
        kind: classification
        version: 1
        group: mood
        default: {id: calm, label: Спокойно}
        rules:
          - id: angry
            label: Злой
            any: [{lemmas: [безобразие]}]
        """)
    assert fired(rs, [U("client", 0, "Это безобразие")], group="flag") == ["alert"]
    assert fired(rs, [U("client", 0, "Спасибо")], group="flag") == []


def test_classification_first_match_wins_else_default(tmp_path):
    rs = ruleset(tmp_path, """
        kind: classification
        version: 1
        group: purpose
        default: {id: other, label: Прочее}
        rules:
          - {id: complaint, label: Жалоба, any: [{lemmas: [жалоба]}]}
          - {id: order, label: Заказ, any: [{lemmas: [заказать]}]}
        """)
    res = analyse(rs, [U("client", 0, "хочу заказать, но сначала жалоба")], {})
    assert res["groups"]["purpose"] == "complaint"
    assert res["tags"] == ["Жалоба"]
    assert analyse(rs, [U("client", 0, "привет")], {})["groups"]["purpose"] == "other"


CALL_RULES = """
- id: short
  label: S
  call: {answered: true, max_talk: 45s}
- id: waited
  label: W
  call: {min_wait: 25s}
- id: inbound_site
  label: I
  call: {direction: in, source: [site, avito], provider: mango}
- id: utm
  label: U
  call: {utm_source: yandex, utm_medium: "cp*"}
- id: op
  label: O
  call: {operator: "101"}
- id: missed
  label: M
  call: {answered: false}
- id: long_total
  label: L
  call: {min_duration: 2m}
- id: repeat
  label: R
  call: {history: {within: 7d, min_calls: 1}}
- id: mono
  label: Mo
  call: {min_operator_share: 0.8}
"""


@pytest.fixture
def calls(tmp_path):
    return ruleset(tmp_path, tags_doc(CALL_RULES))


def test_call_talk_wait_answered(calls):
    assert fired(calls, [], {"status": "answered", "talk_seconds": 30, "wait_seconds": 30}) == ["short", "waited"]
    assert fired(calls, [], {"status": "missed", "talk_seconds": 0, "wait_seconds": 10}) == ["missed"]
    assert fired(calls, [], {"status": "answered", "talk_seconds": 45}) == []


def test_call_unknown_values_never_match(calls):
    assert fired(calls, [], {}) == []


def test_call_direction_source_provider_attribution_operator(calls):
    call = {"direction": "inbound", "source_channel": "avito", "provider": "Mango", "talk_seconds": 100,
            "status": "answered", "attribution": {"source": "yandex", "medium": "cpc"},
            "operator": {"extension": "101", "name": "Анна"}}
    assert fired(calls, [], call) == ["inbound_site", "utm", "op"]
    call["direction"] = "outbound"
    call["attribution"]["medium"] = "organic"
    assert fired(calls, [], call) == ["op"]


def test_call_total_duration_from_parts(calls):
    assert "long_total" in fired(calls, [], {"wait_seconds": 30, "talk_seconds": 100, "status": "answered"})


def test_call_history(calls):
    seen = []

    def history(phone, days):
        seen.append((phone, days))
        return 1 if phone == "+79990000000" else 0

    assert "repeat" in fired(calls, [], {"client_phone": "+79990000000"}, history=history)
    assert "repeat" not in fired(calls, [], {"client_phone": "+79991111111"}, history=history)
    assert "repeat" not in fired(calls, [], {"client_phone": "+79990000000"}, history=None)
    assert seen[0] == ("+79990000000", 7.0)


def test_operator_share_from_metrics_or_utterances(calls):
    utts = [U("operator", 0, "длинная речь", end=90), U("client", 90, "угу", end=92)]
    assert "mono" in fired(calls, utts, {})
    assert "mono" not in fired(calls, utts, {"metrics": {"operator_share": 0.5}})


LEXICON = """
kind: lexicon
version: 1
group: tone
speaker: client
default: {id: neutral, label: Нейтрально}
intensifiers: [очень]
intensity: 2
poles:
  - id: negative
    label: Негатив
    min_score: 2
    opposite: positive
    terms:
      - {lemmas: [плохой], weight: 1}
      - {lemmas: [ужас], weight: 2}
  - id: positive
    label: Позитив
    min_score: 2
    opposite: negative
    terms:
      - {lemmas: [нравиться], weight: 2}
"""


@pytest.mark.parametrize("text,tone", [
    ("Ужас какой-то", "negative"),
    ("плохо", "neutral"),
    ("очень плохо", "negative"),
    ("мне всё нравится", "positive"),
    ("мне не нравится", "negative"),
    ("всё хорошо", "neutral"),
])
def test_lexicon_tone_weights_intensifiers_negation(tmp_path, text, tone):
    rs = ruleset(tmp_path, LEXICON)
    assert fired(rs, [U("client", 0, text)], group="tone") == tone


def test_lexicon_counts_only_its_speaker(tmp_path):
    rs = ruleset(tmp_path, LEXICON)
    assert fired(rs, [U("operator", 0, "Ужас какой")], group="tone") == "neutral"


SCRIPT = """
kind: script
version: 1
id: sales
label: Скрипт
applies_to: {call: {answered: true}}
checkpoints:
  - {id: greeting, label: Привет, within: {first: 20s}, any: [{lemmas: [здравствовать]}]}
  - {id: offer, label: Предложение, weight: 2, any: [{phrases: ["могу предложить"]}]}
  - {id: bye, label: Пока, any: [{phrases: ["до свидания"]}]}
"""


def test_script_checkpoints_weights_and_score(tmp_path):
    rs = ruleset(tmp_path, SCRIPT)
    res = analyse(rs, [U("operator", 0, "Здравствуйте"), U("operator", 10, "Могу предложить диван")],
                  {"status": "answered"})
    assert res["script_id"] == "sales"
    assert res["checkpoints"] == {"greeting": True, "offer": True, "bye": False}
    assert res["script_score"] == pytest.approx(0.75)
    assert analyse(rs, [U("client", 0, "Здравствуйте")], {"status": "answered"})["checkpoints"]["greeting"] is False


def test_script_not_applied_to_missed_call(tmp_path):
    rs = ruleset(tmp_path, SCRIPT)
    res = analyse(rs, [], {"status": "missed"})
    assert res["script_id"] is None and res["script_score"] is None and res["checkpoints"] == {}


def test_result_shape_version_and_evidence(price):
    res = analyse(price, [U("client", 12.5, "Ну это дорого, конечно")], {})
    assert res["rules_version"] == price.version and len(price.version) == 12
    assert res["tags"] == ["Цена"]
    assert res["hits"] == [{"rule_id": "price", "group": "g", "speaker": "client", "start_s": 12.5,
                            "text": "Ну это дорого, конечно", "matched": "дорого"}]


def test_disabled_rule_never_fires(tmp_path):
    rs = ruleset(tmp_path, tags_doc("""
        - id: switched_off
          label: Выключено
          enabled: false
          any: [{lemmas: [цена]}]
        """))
    assert fired(rs, [U("client", 0, "цена")]) == []


def test_prefix_and_exact_words(tmp_path):
    rs = ruleset(tmp_path, tags_doc("""
        - id: social
          label: S
          any: [{lemmas: ["инстаграм*"]}]
        - id: card
          label: C
          any: [{lemmas: ["=картой"]}]
        """))
    assert fired(rs, [U("client", 0, "в инстаграмме увидела")]) == ["social"]
    assert fired(rs, [U("client", 0, "оплачу картой")]) == ["card"]
    assert fired(rs, [U("client", 0, "в гугл картах")]) == []


def test_phrases_with_prefix_words_and_gaps_across_many_utterances(tmp_path):
    rs = ruleset(tmp_path, tags_doc("""
        - id: insta
          label: I
          any: [{phrases: ["в инстаграм*", "нашла в телеграм*"], max_gap: 1}]
        - id: exact
          label: E
          any: [{phrases: ["=картой оплачу", "сколько стоит"]}]
        """))
    filler = [U("operator", i * 4, "слушаю вас внимательно") for i in range(30)]
    assert fired(rs, filler + [U("client", 200, "я в их инстаграмме видела")]) == ["insta"]
    assert fired(rs, filler + [U("client", 200, "нашла вас в телеграм канале")]) == ["insta"]
    assert fired(rs, filler + [U("client", 200, "картой оплачу, а сколько стоило?")]) == ["exact"]
    assert fired(rs, filler + [U("client", 200, "оплачу картой"), U("client", 204, "стоит")]) == []


def test_matcher_words_are_the_tokenizer_words():
    from service import morph
    from service.matcher import Context

    utts = [U("client", 0, "Ну-ка, 5шт по 1,5 кг — «Уютный дом»!"), U("operator", 3, "")]
    ctx = Context(utts, {}, None)
    assert [u.words for u in ctx.utts] == [[t.surface for t in morph.tokenize(u.text)] for u in utts]
    assert ctx.utts[0].tokens == morph.tokenize(utts[0].text)


AFTER_SCRIPT = """
kind: script
version: 1
id: sales
label: Скрипт
checkpoints:
  - {id: asked_name, label: Имя, after: greeting, any: [{phrases: ["как вас зовут", "как к вам обращаться"]}]}
  - {id: greeting, label: Привет, any: [{lemmas: [здравствовать]}]}
  - {id: no_rudeness, label: Вежливость, after: greeting, none: [{lemmas: [отстать]}]}
"""


def test_after_checkpoint_passes_only_after_the_first_hit_of_the_other(tmp_path):
    rs = ruleset(tmp_path, AFTER_SCRIPT)
    res = analyse(rs, [U("operator", 0, "Здравствуйте!"), U("operator", 5, "Как вас зовут?")], {})
    assert res["checkpoints"] == {"asked_name": True, "greeting": True, "no_rudeness": True}
    assert [h["rule_id"] for h in res["hits"]] == ["asked_name", "greeting"]
    # the same utterance counts when the words come later in it
    res = analyse(rs, [U("operator", 0, "Здравствуйте, как к вам обращаться?")], {})
    assert res["checkpoints"]["asked_name"] is True


def test_after_checkpoint_fails_before_or_without_the_other(tmp_path):
    rs = ruleset(tmp_path, AFTER_SCRIPT)
    before = analyse(rs, [U("operator", 0, "Как вас зовут?"), U("operator", 5, "Здравствуйте")], {})
    assert before["checkpoints"] == {"asked_name": False, "greeting": True, "no_rudeness": True}
    alone = analyse(rs, [U("operator", 0, "Как вас зовут?")], {})
    assert alone["checkpoints"] == {"asked_name": False, "greeting": False, "no_rudeness": False}
    assert alone["script_score"] == 0


def test_after_keeps_only_hits_after_the_anchor(tmp_path):
    rs = ruleset(tmp_path, AFTER_SCRIPT)
    res = analyse(rs, [U("operator", 0, "Как вас зовут?"), U("operator", 3, "Здравствуйте"),
                       U("operator", 6, "Так как к вам обращаться?")], {})
    assert res["checkpoints"]["asked_name"] is True
    assert [h["start_s"] for h in res["hits"] if h["rule_id"] == "asked_name"] == [6.0]


def test_after_in_examples_uses_script_order(tmp_path):
    rs = ruleset(tmp_path, AFTER_SCRIPT.replace(
        'any: [{phrases: ["как вас зовут", "как к вам обращаться"]}]}',
        'any: [{phrases: ["как вас зовут", "как к вам обращаться"]}],\n'
        '     examples: {match: [["Здравствуйте", "Как вас зовут?"]], no_match: [["Как вас зовут?", "Здравствуйте"]]}}'))
    from service.rule_examples import run_example

    rule = rs.rules["asked_name"]
    assert run_example(rs, rule, rule.examples["match"][0])[0] is True
    assert run_example(rs, rule, rule.examples["no_match"][0])[0] is False
