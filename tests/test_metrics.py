"""Call metrics."""
from service.metrics import compute_metrics
from service.models import Utterance


def test_metrics_talk_time_shares_and_turns():
    utts = [Utterance("operator", 0, 10, "a"), Utterance("client", 10, 14, "b"),
            Utterance("operator", 14, 20, "c"), Utterance("operator", 18, 22, "overlap")]
    m = compute_metrics({"talk_seconds": 25, "wait_seconds": 6}, utts, 25.0)
    assert m["talk_s_operator"] == 18.0 and m["talk_s_client"] == 4.0
    assert m["operator_share"] == round(18 / 22, 3)
    assert m["utterances_operator"] == 3 and m["utterances_client"] == 1
    assert m["duration_s"] == 31 and m["wait_s"] == 6 and m["talk_s"] == 25


def test_metrics_without_transcript():
    m = compute_metrics({"talk_seconds": 0, "wait_seconds": 40, "status": "missed"}, [], None)
    assert m["operator_share"] is None and m["talk_s"] == 0 and m["duration_s"] == 40
