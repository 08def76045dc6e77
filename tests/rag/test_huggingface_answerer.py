"""The local Hugging Face generator, on a tiny GPT-2 and tokenizer the test builds (no downloads)."""
from pathlib import Path

import pytest

from rag.answerers import AnswererUnavailable
from rag.answerers.huggingface import HuggingFaceAnswerer
from rag.service import ANSWERED, KnowledgeService, Thresholds

pytestmark = pytest.mark.ml

transformers = pytest.importorskip("transformers")
pytest.importorskip("torch")
tokenizers = pytest.importorskip("tokenizers")


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory) -> Path:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers

    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("tiny-gpt2")
    words = (
        "деньги возвращаются тем же способом которым был оплачен заказ в течение 10 рабочих дней "
        "сертификат бонусы баллы подарок скидка магазин вернуть можно нельзя . , ? :"
    ).split()
    vocab = {token: index for index, token in enumerate(["[UNK]", "[PAD]", "[EOS]", *dict.fromkeys(words)])}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", eos_token="[EOS]"
    )
    config = transformers.GPT2Config(
        vocab_size=len(vocab), n_positions=512, n_embd=32, n_layer=1, n_head=2,
        bos_token_id=vocab["[EOS]"], eos_token_id=vocab["[EOS]"],
    )
    transformers.GPT2LMHeadModel(config).save_pretrained(directory)
    fast.save_pretrained(directory)
    return directory


def test_generates_from_a_local_folder(tiny_gpt2, retriever):
    answerer = HuggingFaceAnswerer(str(tiny_gpt2), max_new_tokens=8)
    passages = retriever.retrieve("через сколько вернутся деньги").hits
    answer = answerer.answer("через сколько вернутся деньги", passages)
    assert answer.generated and answer.answerer == "hf-local"
    assert answer.text.strip()
    assert len(answer.text.split()) <= 8
    assert answer.article_id == "refund-conditions"
    # greedy decoding is deterministic
    assert answerer.answer("через сколько вернутся деньги", passages).text == answer.text
    prompt = answerer.prompt("вопрос", passages[:1])
    assert "Отвечай на вопрос клиента только по фрагментам" in prompt and prompt.endswith("Ответ:")


def test_word_salad_of_an_untrained_model_falls_back_to_the_extractive_answer(tiny_gpt2, fixture_settings, retriever):
    service = KnowledgeService(
        fixture_settings, retriever=retriever, answerer=HuggingFaceAnswerer(str(tiny_gpt2), max_new_tokens=12),
        thresholds=Thresholds(answer=0.0, clarify=0.0),
    )
    result = service.answer("через сколько вернутся деньги за сертификат")
    assert result.status == ANSWERED
    assert result.answerer == "extractive" and result.grounded
    assert result.fallback_reason
    assert "10 рабочих дней" in result.text


def test_missing_folder_is_a_clear_error(tmp_path, retriever):
    with pytest.raises(AnswererUnavailable, match="not found"):
        HuggingFaceAnswerer(str(tmp_path / "nope")).answer("вопрос", retriever.retrieve("баланс").hits)
