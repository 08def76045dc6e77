import spacy
from rasa.nlu.tokenizers.spacy_tokenizer import SpacyTokenizer
from rasa.nlu.utils.spacy_utils import SpacyNLP
from rasa.shared.nlu.training_data.message import Message

from nlu.spacy_pipeline import DEFAULT_OUTPUT, build_pipeline, is_current


def test_setup_built_pipeline_is_current():
    assert is_current(DEFAULT_OUTPUT)


def test_pipeline_round_trip_gives_pymorphy3_lemmas(tmp_path):
    path = build_pipeline(tmp_path / "ru")
    nlp = spacy.load(path)  # the factory is found through the spacy_factories entry point
    assert nlp.pipe_names == ["pymorphy3_lemmatizer"]
    lemmas = [token.lemma_ for token in nlp("Купила сертификаты в Спортмастере")]
    assert lemmas == ["купить", "сертификат", "в", "спортмастер"]
    assert [t.lemma_ for t in nlp("refund PLEASE")] == ["refund", "please"]


def test_rasa_spacy_nlp_and_tokenizer_use_the_lemmas(execution_context, model_storage, resource):
    config = {**SpacyNLP.get_default_config(), "model": str(DEFAULT_OUTPUT), "case_sensitive": False}
    spacy_nlp = SpacyNLP.create(config, model_storage, resource, execution_context)
    tokenizer = SpacyTokenizer(SpacyTokenizer.get_default_config())
    message = Message(data={"text": "Не пришли сертификаты на почту"})
    spacy_nlp.process([message], spacy_nlp.provide())
    tokenizer.process([message])
    assert [t.lemma for t in message.get("text_tokens")] == ["не", "прислать", "сертификат", "на", "почта"]


def test_empty_and_huge_texts_tokenize(execution_context, model_storage, resource):
    config = {**SpacyNLP.get_default_config(), "model": str(DEFAULT_OUTPUT)}
    spacy_nlp = SpacyNLP.create(config, model_storage, resource, execution_context)
    tokenizer = SpacyTokenizer(SpacyTokenizer.get_default_config())
    for text in ["", "😀", "1234", "сертификат " * 500]:
        message = Message(data={"text": text})
        spacy_nlp.process([message], spacy_nlp.provide())
        tokenizer.process([message])
        assert message.get("text_tokens") is not None
