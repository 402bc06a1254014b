"""Every `examples` entry of the shipped rules/ passes, and the default rules produce the taxonomy."""
import json
from pathlib import Path

import pytest

from service.matcher import analyse
from service.rule_examples import run_example
from service.rules_cli import load_transcript
from service.ruleset import check, load_ruleset

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "rules"
DATA = Path(__file__).parent / "data" / "transcripts"

TAXONOMY = {
    "purpose": ["purpose_complaint", "purpose_service", "purpose_order", "purpose_consultation", "purpose_other"],
    "result": ["result_success", "result_callback", "result_refusal", "result_unknown"],
    "reason": ["reason_price", "reason_competitor", "reason_stock", "reason_delivery", "reason_not_target"],
    "topic": ["topic_price", "topic_competitor", "topic_urgent", "topic_delivery", "topic_warranty",
              "topic_discount", "topic_payment"],
    "source": ["source_search", "source_ads", "source_referral", "source_social", "source_maps", "source_repeat"],
    "tone": ["tone_negative", "tone_positive", "tone_neutral"],
    "flag": ["missed", "short_call", "long_wait", "repeat_call", "monologue", "alert_conflict"],
}
CHECKPOINTS = ["greeting", "asked_help", "needs", "presentation", "asked_source", "closing"]


@pytest.fixture(scope="module")
def rs():
    return load_ruleset(RULES)


def _examples():
    rs = load_ruleset(RULES)
    for rule in rs.rules.values():
        for key in ("match", "no_match"):
            for i, ex in enumerate(rule.examples.get(key) or []):
                yield pytest.param(rule.id, key, ex, id=f"{rule.id}-{key}-{i}")


@pytest.mark.parametrize("rule_id,key,example", list(_examples()))
def test_shipped_rule_example(rs, rule_id, key, example):
    ok, words = run_example(rs, rs.rules[rule_id], example)
    assert ok is (key == "match"), f"{rule_id} {key}: {example} (matched {words})"


def test_shipped_rules_check_strict_clean():
    assert [p.text() for p in check(RULES, strict=True)] == []


def test_shipped_rules_produce_exactly_the_taxonomy_ids(rs):
    for group, ids in TAXONOMY.items():
        g = next(g for g in rs.groups if g.id == group)
        have = [r.id for r in g.rules] + ([g.default.id] if g.default else [])
        assert sorted(have) == sorted(ids), group
    assert [cp.id for s in rs.scripts for cp in s.checkpoints] == CHECKPOINTS
    assert {g.id for g in rs.groups} == set(TAXONOMY)


def test_shipped_labels_match_taxonomy(rs):
    assert rs.rules["purpose_complaint"].label == "Цель: жалоба"
    assert rs.rules["result_unknown"].label == "Итог: не определён"
    assert rs.rules["reason_delivery"].label == "Отказ: сроки или условия доставки"
    assert rs.rules["tone_neutral"].label == "Тон: нейтрально"
    assert rs.rules["alert_conflict"].label == "Внимание: конфликт"
    assert rs.rules["asked_source"].label == "Вопрос «Как узнали о нас?»"


def _score(rs, text):
    files = sorted(DATA.glob("*.json"))
    right = {"purpose": 0, "result": 0, "tone": 0}
    for f in files:
        data = json.loads(f.read_text(encoding="utf-8"))
        utts, call = load_transcript(data, text=text)
        res = analyse(rs, utts, call)
        for g in right:
            right[g] += res["groups"][g] == data["labels"][g]
    return {g: n / len(files) for g, n in right.items()}


@pytest.mark.parametrize("text,floor", [("clean", 0.9), ("asr", 0.85)])
def test_default_rules_accuracy_on_labelled_samples(rs, text, floor):
    scores = _score(rs, text)
    assert all(v >= floor for v in scores.values()), scores


def test_reason_only_when_refusal(rs):
    from service.models import Utterance as U

    refusal = analyse(rs, [U("client", 0, 3, "Нет, спасибо, это слишком дорого")], {"status": "answered"})
    assert refusal["groups"]["result"] == "result_refusal" and refusal["groups"]["reason"] == ["reason_price"]
    success = analyse(rs, [U("client", 0, 3, "Дорого, конечно, но оформляйте")], {"status": "answered"})
    assert success["groups"]["result"] == "result_success" and success["groups"]["reason"] == []


def test_alert_conflict_from_complaint_or_negative_tone(rs):
    from service.models import Utterance as U

    res = analyse(rs, [U("client", 0, 3, "Безобразие! Сколько можно, второй день без связи")], {"status": "answered"})
    assert "alert_conflict" in res["groups"]["flag"]
    assert "Внимание: конфликт" in res["tags"]


def test_repeat_call_uses_history(rs):
    call = {"status": "answered", "talk_seconds": 60, "client_phone": "+79001234567"}
    assert "repeat_call" in analyse(rs, [], call, history=lambda phone, days: 2 if days == 7 else 0)["groups"]["flag"]
    assert "repeat_call" not in analyse(rs, [], call, history=lambda phone, days: 0)["groups"]["flag"]


OTHER_BUSINESSES = [
    # (lines, expected groups subset, expected passed checkpoints subset)
    (["o:Оконная компания «Тёплый дом», добрый день, чем могу помочь?",
      "c:Здравствуйте, сколько будут стоить пластиковые окна в двушку?", "o:Какой у вас дом, панельный? Сколько окон?",
      "c:Панельный, три окна", "o:Ориентировочно от сорока пяти тысяч, точнее скажет замерщик.",
      "c:Мне нужно подумать, я вам перезвоню", "o:Хорошо, будем ждать. Всего доброго"],
     {"purpose": "purpose_consultation", "result": "result_callback", "topic": ["topic_price"]},
     {"greeting", "asked_help", "needs", "presentation", "closing"}),
    (["o:Пиццерия «Мама Роза», здравствуйте",
      "c:Здравствуйте, я заказывал пиццу час назад, её привезли холодную и курьер нахамил",
      "o:Приносим извинения, подскажите номер заказа", "c:5521. Это просто ужас, больше у вас заказывать не буду",
      "o:Мы вернём деньги за заказ, менеджер свяжется с вами сегодня", "c:Ладно"],
     {"purpose": "purpose_complaint", "result": "result_callback", "tone": "tone_negative"}, {"greeting"}),
    (["o:Салон красоты «Лилия», здравствуйте, слушаю вас", "c:Добрый день, хочу записаться на стрижку на завтра",
      "o:На какое время вам удобно?", "c:После шести вечера",
      "o:Есть окно в 18:30 к мастеру Ольге, стоимость тысяча двести рублей. Записываю?", "c:Да, записывайте",
      "o:Записала. Как вы о нас узнали?", "c:Подружка порекомендовала", "o:Ждём вас завтра, до свидания"],
     {"purpose": "purpose_order", "result": "result_success", "source": ["source_referral"]},
     {"greeting", "asked_help", "presentation", "asked_source", "closing"}),
    (["o:Автошкола «Старт», добрый день", "c:Сколько стоит обучение на категорию Б?",
      "o:Пятьдесят две тысячи, можно в рассрочку", "c:Дороговато. Нет, спасибо, не потяну"],
     {"purpose": "purpose_consultation", "result": "result_refusal", "reason": ["reason_price"]},
     {"greeting", "presentation"}),
    (["o:Компания «Стройсервис», здравствуйте",
      "c:Здравствуйте, мы поставщик стройматериалов, хотим предложить сотрудничество",
      "o:Нам это не интересно, спасибо", "c:Понятно, до свидания"],
     {"purpose": "purpose_other", "result": "result_refusal", "reason": ["reason_not_target"]}, {"greeting"}),
]


@pytest.mark.parametrize("lines,groups,checkpoints", OTHER_BUSINESSES)
def test_default_rules_on_calls_from_other_businesses(rs, lines, groups, checkpoints):
    from service.models import Utterance as U

    utts = [U({"o": "operator", "c": "client"}[line[0]], i * 5.0, i * 5.0 + 4, line[2:]) for i, line in enumerate(lines)]
    res = analyse(rs, utts, {"status": "answered", "talk_seconds": len(lines) * 5, "direction": "inbound"})
    for group, value in groups.items():
        assert res["groups"][group] == value, group
    assert checkpoints <= {k for k, v in res["checkpoints"].items() if v}


def _rules_with_company(tmp_path, names):
    import shutil

    folder = tmp_path / "rules"
    shutil.copytree(RULES, folder)
    text = (folder / "vars.yaml").read_text(encoding="utf-8")
    assert "\n  company: []\n" in text
    (folder / "vars.yaml").write_text(text.replace("\n  company: []\n", f"\n  company: {json.dumps(names, ensure_ascii=False)}\n"),
                                      encoding="utf-8")
    return folder


def _greeting(rs, text, start=0.0):
    from service.models import Utterance as U

    res = analyse(rs, [U("operator", start, start + 3, text), U("client", start + 4, start + 7, "Здравствуйте")],
                  {"status": "answered"})
    return res["checkpoints"]["greeting"]


def test_greeting_without_company_names_is_greeting_only(rs):
    assert rs.variables["company"] == ()
    assert _greeting(rs, "Добрый день, слушаю вас") is True
    assert _greeting(rs, "Компания «Уютный дом», здравствуйте") is True
    assert _greeting(rs, "Добрый день", start=30) is False


def test_greeting_with_company_names_needs_the_name_in_the_first_20s(tmp_path):
    folder = _rules_with_company(tmp_path, ["Уютный дом", "СетьЛайн"])
    assert [p.text() for p in check(folder, strict=True)] == []   # the shipped examples still pass
    rs = load_ruleset(folder)
    assert rs.version != load_ruleset(RULES).version
    assert _greeting(rs, "Мебельный салон «Уютный дом», здравствуйте!") is True
    assert _greeting(rs, "Добрый день, компания СетьЛайн, меня зовут Анна") is True
    assert _greeting(rs, "Добрый день, вы позвонили в уютный, тёплый дом") is False     # words apart
    assert _greeting(rs, "Здравствуйте, это салон «Уютного дома»") is True               # any word form
    assert _greeting(rs, "Добрый день, слушаю вас") is False
    assert _greeting(rs, "Уютный дом") is False                                         # no greeting
    assert _greeting(rs, "Уютный дом, добрый день", start=25) is False


def test_greeting_examples_use_the_first_company_name(tmp_path):
    rs = load_ruleset(_rules_with_company(tmp_path, ["Ромашка"]))
    rule = rs.rules["greeting"]
    ok, words = run_example(rs, rule, rule.examples["match"][0])
    assert ok and "Ромашка" in words
