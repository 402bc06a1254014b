"""Tokenising, normal forms, numbers and negation (service.morph)."""
from service import morph


def forms(text):
    return [t.forms for t in morph.tokenize(text)]


def test_normal_forms_yo_folded_and_all_alternatives():
    nf = morph.normal_forms("Дешёвый")
    assert "дешевый" in nf and "дешёвый" not in nf
    assert {"стоить", "стоять"} <= morph.normal_forms("стоит")
    assert "дешевый" in morph.normal_forms("дешевле")


def test_tokenize_keeps_surface_offsets_and_clauses():
    text = "Нет, это не дорого! Шкаф-купе."
    toks = morph.tokenize(text)
    assert [t.surface for t in toks] == ["Нет", "это", "не", "дорого", "Шкаф-купе"]
    assert text[toks[3].start:toks[3].end] == "дорого"
    assert [t.clause for t in toks] == [0, 1, 1, 1, 2]


def test_hyphenated_word_gets_part_forms_but_not_for_particles():
    assert "шкаф" in morph.normal_forms("шкаф-купе")
    assert "что" not in morph.normal_forms("что-нибудь")
    assert "какой" not in morph.normal_forms("какой-то")


def test_numbers_digits_and_words_share_pseudo_forms():
    assert morph.NUM in morph.normal_forms("54900")
    assert morph.AMOUNT in morph.normal_forms("54900")
    assert morph.AMOUNT not in morph.normal_forms("900")
    assert morph.NUM in morph.normal_forms("пятьдесят")
    assert morph.AMOUNT in morph.normal_forms("тысяч")


def test_exact_form_marker():
    assert "=картой" in morph.normal_forms("Картой")
    assert morph.term_word("=картой") == (frozenset({"=картой"}), None)


def test_term_word_prefix_and_phrase_words():
    assert morph.term_word("инстаграм*") == (None, "инстаграм")
    words = morph.phrase_words("сколько стоит #сумма")
    assert len(words) == 3 and words[2] == (frozenset({morph.AMOUNT}), None)
    assert "стоить" in words[1][0]


def negs(text):
    toks = morph.tokenize(text)
    return {t.norm: morph.is_negated(toks, i) for i, t in enumerate(toks)}


def test_negation_before_word_and_through_adverbs():
    assert negs("это не дорого")["дорого"]
    assert negs("не очень дорого")["дорого"]
    assert negs("без переплаты")["переплаты"]


def test_negation_after_genitive_noun():
    assert negs("жалоб нет")["жалоб"]
    assert not negs("дорого нет спасибо")["дорого"]


def test_negation_stops_at_punctuation_and_verbs():
    assert not negs("нет, дорого")["дорого"]
    assert not negs("извините что долго не отвечали какой зуб")["какой"]


def test_dictionary_forms_check():
    assert morph.dictionary_forms("дорогой") == (True, None)
    assert morph.dictionary_forms("дороговато") == (False, "дороговатый")
    assert morph.dictionary_forms("хэдхантерище")[0] in (True, False)


def test_token_regex_words_and_numbers():
    assert morph.TOKEN_RE.findall("5шт по 1,5 кг, ёлка-палка; rock'n'roll 12.04.2024") == [
        "5", "шт", "по", "1,5", "кг", "ёлка-палка", "rock'n'roll", "12.04.2024"]
    assert [t.surface for t in morph.tokenize("Ну-ка, 3D-принтер!")] == morph.TOKEN_RE.findall("Ну-ка, 3D-принтер!")


def test_layout_is_tokenize_without_normal_forms():
    text = "Нет, это не дорого! Шкаф-купе — 1,5 м. «Уютный дом»: жалоб нет"
    assert [(s.norm, s.clause, s.start, s.end) for s in morph.layout(text)] == [
        (t.norm, t.clause, t.start, t.end) for t in morph.tokenize(text)]
    slots, toks = morph.layout("не очень дорого"), morph.tokenize("не очень дорого")
    assert morph.is_negated(slots, 2) == morph.is_negated(toks, 2) is True
