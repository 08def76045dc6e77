"""Project wiring: a bare `rasa train` sees data/ and scenarios/, files are consistent."""
from pathlib import Path

import yaml
from rasa.shared.importers.importer import TrainingDataImporter

from engine.importer import ProjectImporter

INTENT_CONTRACT = {
    "greet", "goodbye", "thank", "affirm", "deny", "request_human", "help_unclear", "refund_request",
    "resend_certificate", "check_balance", "certificate_not_accepted", "b2b_documents", "complaint",
    "wrong_address", "spam", "knowledge_question", "bot_challenge", "cancel", "inform",
}
ENTITY_CONTRACT = {"order_id", "certificate_code", "email", "phone", "inn", "brand"}


def test_default_import_includes_scenarios():
    importer = TrainingDataImporter.load_from_config("config.yml", "domain.yml", ["data"])
    rules = importer.get_stories()
    assert any(step.block_name == "greet" for step in rules.story_steps)
    nlu = importer.get_nlu_data()
    assert INTENT_CONTRACT <= nlu.intents


def test_explicit_test_paths_are_not_mixed_with_scenarios(tmp_path):
    importer = ProjectImporter("config.yml", "domain.yml", [str(tmp_path)])
    assert importer.get_stories().story_steps == []


def test_domain_declares_the_contract():
    domain = yaml.safe_load(Path("domain.yml").read_text(encoding="utf-8"))
    assert INTENT_CONTRACT <= set(domain["intents"])
    # an entity is a name, or {name: options} (e.g. influence_conversation: false)
    entities = {entity if isinstance(entity, str) else next(iter(entity)) for entity in domain["entities"]}
    assert ENTITY_CONTRACT <= entities


def test_every_contract_intent_has_enough_varied_training_examples():
    from rasa.shared.nlu.training_data.loading import load_data

    data = load_data("data/nlu")
    counts = {intent: 0 for intent in INTENT_CONTRACT}
    for example in data.intent_examples:
        if example.get("intent") in counts:
            counts[example.get("intent")] += 1
    assert min(counts.values()) >= 40, counts


def test_heldout_set_is_never_trained_on():
    from rasa.shared.nlu.training_data.loading import load_data

    train = {e.get("text").strip().lower() for e in load_data("data/nlu").intent_examples}
    heldout = [e.get("text").strip().lower() for e in load_data("tests/data/nlu_heldout.yml").intent_examples]
    assert len(heldout) >= 300
    assert not train & set(heldout)
