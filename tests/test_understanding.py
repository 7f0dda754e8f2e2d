from bot.faq.understanding import topic_ranking, understand


def parse(intent, confidence, ranking):
    return {
        "intent": {"name": intent, "confidence": confidence},
        "response_selector": {"faq": {"ranking": [{"intent_response_key": f"faq/{t}", "confidence": c} for t, c in ranking]}},
    }


def test_confident_faq_answers_the_top_topic():
    result = understand(parse("faq", 0.9, [("cni", 0.8), ("passeport", 0.1)]), 0.35)
    assert (result.kind, result.topic, result.label) == ("faq", "cni", "cni")


def test_unsure_topic_becomes_a_fallback_with_candidates():
    result = understand(parse("faq", 0.9, [("cni", 0.3), ("passeport", 0.25)]), 0.35)
    assert result.kind == "fallback" and result.label == "fallback"
    assert [t for t, _ in result.candidates] == ["cni", "passeport"]


def test_other_intents_pass_through_and_missing_data_is_a_fallback():
    assert understand(parse("greet", 0.99, []), 0.35).label == "greet"
    assert understand({}, 0.35).label == "fallback"
    assert topic_ranking({"response_selector": {}}) == []


def test_distress_is_answered_even_when_unsure():
    result = understand(parse("nlu_fallback", 0.4, [("urgence", 0.15), ("sante", 0.1)]), 0.35)
    assert (result.kind, result.topic) == ("faq", "urgence")
    noise = understand(parse("nlu_fallback", 0.4, [("urgence", 0.03), ("sante", 0.02)]), 0.35)
    assert noise.kind == "fallback"


def test_a_response_selector_without_retrieval_intent_is_read_too():
    # Rasa's default recipe trains one ResponseSelector for all retrieval intents: "default".
    parse = {"intent": {"name": "faq", "confidence": 0.9},
             "response_selector": {"default": {"ranking": [{"intent_response_key": "faq/cni", "confidence": 0.8}]}}}
    assert understand(parse, 0.15).topic == "cni"
