"""The user-provided-model path of the featurizer, on a tiny BERT the test builds (no downloads)."""
from pathlib import Path

import numpy as np
import pytest
from rasa.shared.exceptions import InvalidConfigException
from rasa.shared.nlu.training_data.message import Message

from nlu.featurizers.sentence_embedding_featurizer import SentenceEmbeddingFeaturizer

pytestmark = pytest.mark.ml

transformers = pytest.importorskip("transformers")
pytest.importorskip("sentence_transformers")


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    import torch

    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("tiny-bert")
    alphabet = list("абвгдеёжзийклмнопрстуфхцчшщъыьэюяabcdefghijklmnopqrstuvwxyz0123456789")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *alphabet, *[f"##{c}" for c in alphabet]]
    (directory / "vocab.txt").write_text("\n".join(vocab), encoding="utf-8")
    tokenizer = transformers.BertTokenizerFast(vocab_file=str(directory / "vocab.txt"), do_lower_case=True)
    config = transformers.BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=512,
    )
    transformers.BertModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def test_featurizer_with_a_local_hugging_face_model(create_component, tiny_bert):
    featurizer = create_component(
        SentenceEmbeddingFeaturizer, {"encoder": "sentence-transformers", "model": str(tiny_bert)}
    )
    messages = [Message(data={"text": t}) for t in ["верните деньги", "баланс сертификата", "", "я" * 5000]]
    featurizer.process(messages)
    vectors = np.vstack([m.get_dense_features("text")[1].features for m in messages])
    assert vectors.shape == (4, 32)
    assert np.all(np.isfinite(vectors))
    assert not np.allclose(vectors[0], vectors[1])


def test_missing_model_path_is_a_clear_config_error(create_component, tmp_path):
    featurizer = create_component(
        SentenceEmbeddingFeaturizer, {"encoder": "sentence-transformers", "model": str(tmp_path / "nope")}
    )
    with pytest.raises(InvalidConfigException, match="Cannot load the encoder model"):
        featurizer.process([Message(data={"text": "привет"})])
