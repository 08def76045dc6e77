"""The grounding check accepts supported sentences and rejects unsupported ones."""
from rag.grounding import GroundingChecker
from rag.retriever import Hit

PASSAGES = [
    Hit("c1", "refund-conditions", "Можно ли вернуть деньги за сертификат", "Как вернутся деньги",
        "Деньги возвращаются тем же способом, которым был оплачен заказ, в течение 10 рабочих дней.", 1.0),
    Hit("c2", "refund-conditions", "Можно ли вернуть деньги за сертификат", "",
        "Вернуть деньги можно, если сертификат не активирован и с покупки прошло не больше 14 календарных дней.", 0.9),
]


def test_supported_answer_is_grounded():
    checker = GroundingChecker()
    report = checker.check(
        "Вернуть деньги можно, если сертификат не активирован и прошло не больше 14 дней. "
        "Деньги вернутся тем же способом оплаты в течение 10 рабочих дней.",
        PASSAGES,
    )
    assert report.grounded, report.reason
    assert len(report.sentences) == 2


def test_unsupported_sentence_is_rejected():
    report = GroundingChecker().check(
        "Деньги возвращаются в течение 10 рабочих дней. Также мы дарим бонусные баллы на следующую покупку.",
        PASSAGES,
    )
    assert not report.grounded
    assert [c.sentence for c in report.unsupported] == ["Также мы дарим бонусные баллы на следующую покупку."]


def test_a_wrong_number_is_rejected_even_with_the_same_words():
    report = GroundingChecker().check("Деньги возвращаются в течение 30 рабочих дней.", PASSAGES)
    assert not report.grounded
    assert report.unsupported[0].missing_numbers == ("30",)


def test_no_answer_and_empty_generations_are_not_grounded():
    checker = GroundingChecker()
    assert not checker.check("В базе знаний нет ответа на этот вопрос.", PASSAGES).grounded
    assert not checker.check("   ", PASSAGES).grounded


def test_dense_similarity_can_accept_a_paraphrase(encoders):
    dense, _ = encoders
    sentence = "Вернём оплату через десять рабочих дней тем же путём."
    assert not GroundingChecker().check(sentence, PASSAGES).grounded
    relaxed = GroundingChecker(dense_encoder=dense, min_dense=0.8).check(sentence, PASSAGES)
    assert relaxed.sentences[0].dense is not None and relaxed.sentences[0].dense > 0.8
    assert relaxed.grounded
