"""Local Whisper engine: packing spans into windows, splitting words back, hallucination filter."""
from __future__ import annotations

from integrations.stt.whisper_local import _owner, clean_text, pack_segments


def test_pack_segments_fills_windows_in_order():
    spans = [(0.0, 5.0), (10.0, 20.0), (30.0, 40.0), (50.0, 75.0), (80.0, 81.0)]
    packs = pack_segments(spans, 28.0)
    assert packs == [[(0.0, 5.0), (10.0, 20.0), (30.0, 40.0)], [(50.0, 75.0), (80.0, 81.0)]]  # 27.4 s, 27.6 s
    assert pack_segments(spans, 0) == [[s] for s in spans]
    assert [s for p in pack_segments(spans, 60.0) for s in p] == spans


def test_words_in_the_gap_belong_to_nobody():
    bounds = [(0.0, 4.0), (4.8, 9.0)]
    assert _owner(bounds, 2.0) == 0 and _owner(bounds, 4.2) == 0 and _owner(bounds, 4.6) == 1
    assert _owner(bounds, 12.0) is None


def test_clean_text_drops_known_hallucinations_only():
    assert clean_text("как вы узнали о нашем салоне. ДИНАМИЧНАЯ МУЗЫКА") == "как вы узнали о нашем салоне."
    assert clean_text("Субтитры сделал DimaTorzok") == ""
    assert clean_text("Продолжение следует...") == ""
    assert clean_text("Да, музыка играет, субботу подходит") == "Да, музыка играет, субботу подходит"
