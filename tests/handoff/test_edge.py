"""Bad and abusive input at the edge (engine.edge, installed by the gateway): every case the
security review found answers with a clear reply or a 4xx JSON error — never a 5xx, a silent
``200 []`` or a stall — and nothing oversized, textless or over the limits reaches the NLU."""
from __future__ import annotations

import json
import time

import pytest
from rasa.core.channels import channel as rasa_channel
from rasa.core.channels.rest import RestInput

from engine.edge import EdgeGuard, EdgeSettings, LocalCounter, RedisCounter, clean_text
from handoff.gateway import HandoverGateway, register_through_gateway
from tests.handoff.test_gateway import FakeAgent


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def guard(**settings) -> EdgeGuard:
    return EdgeGuard(EdgeSettings(**settings), counter=LocalCounter(Clock()))


# --- the guard ----------------------------------------------------------------------------------


def test_lone_surrogates_become_a_replacement_character():
    assert clean_text("привет \ud83d") == "привет \ufffd"
    assert clean_text("😀 ok") == "😀 ok"


def test_text_checks():
    edge = guard(max_message_chars=10)
    assert edge.check_text("s", "сколько?")[1] is None
    assert edge.check_text("s", "")[1] is None  # the bot answers an empty message itself
    assert edge.check_text("s", "а" * 11)[1].code == "message_too_long"
    assert edge.check_text("s", "😀🎁!!")[1].code == "message_not_text"
    assert edge.check_text("s", "👍 да")[1] is None


def test_the_sender_limit_counts_a_sliding_window():
    clock = Clock()
    edge = EdgeGuard(EdgeSettings(sender_limit=3, window_seconds=60), counter=LocalCounter(clock))
    assert [edge.check_text("s", "привет")[1] for _ in range(3)] == [None, None, None]
    refused = edge.check_text("s", "привет")[1]
    assert refused.code == "too_many_messages" and refused.status == 429 and 0 < refused.retry_after <= 60
    assert edge.check_text("other", "привет")[1] is None  # per sender
    clock.now += 61
    assert edge.check_text("s", "привет")[1] is None


@pytest.mark.parametrize("body, code, status", [
    (b"[1, 2]", "invalid_json", 400),
    (b"not json", "invalid_json", 400),
    (b'{"sender": "b1"}', "message_missing", 400),
    (b'{"sender": "b1", "message": 5}', "message_not_text", 400),
    (b'{"sender": "b1", "message": null}', "message_not_text", 400),
    (json.dumps({"sender": "x" * 300, "message": "hi"}).encode(), "invalid_sender", 400),
    (json.dumps({"sender": 7, "message": "hi"}).encode(), "invalid_sender", 400),
    (json.dumps({"sender": "b1", "message": "а" * 70_000}).encode(), "payload_too_large", 413),
])
def test_malformed_webhook_bodies_are_refused(body, code, status):
    data, refusal = guard().check_request(body, "10.0.0.1")
    assert data is None and (refusal.code, refusal.status) == (code, status)
    assert refusal.to_dict()["error"]["code"] == code


def test_a_messaging_platforms_servers_are_not_limited_per_address():
    edge = guard(address_limit=2, platform_networks=("149.154.160.0/20", "2001:67c:4e8::/48"))
    body = json.dumps({"sender": "c", "message": "привет"}).encode()
    for _ in range(5):  # Telegram's server carries every customer's messages
        assert edge.check_request(body, "149.154.167.99")[1] is None
        assert edge.address_hit("2001:67c:4e8:f004::9") is None
    assert [edge.check_request(body, "203.0.113.7")[1] is None for _ in range(3)] == [True, True, False]
    assert not edge.settings.is_platform("not-an-address")
    with pytest.raises(ValueError, match="EDGE_PLATFORM_NETWORKS"):
        EdgeSettings(platform_networks=("telegram",))
    assert EdgeSettings.from_env({"EDGE_PLATFORM_NETWORKS": "149.154.160.0/20, 91.108.4.0/22"}).platform_networks == (
        "149.154.160.0/20", "91.108.4.0/22")


def test_client_address_trusts_forwarded_for_only_from_a_trusted_proxy():
    edge = guard()
    assert edge.client_address("127.0.0.1", "203.0.113.7, 127.0.0.1") == "203.0.113.7"
    assert edge.client_address("198.51.100.2", "203.0.113.7") == "198.51.100.2"  # a client cannot claim one
    assert edge.client_address("127.0.0.1", None) == "127.0.0.1"


def test_redis_counts_for_every_replica(redis_url):
    settings = EdgeSettings(sender_limit=5, window_seconds=60, redis_url=redis_url)
    one, two = EdgeGuard(settings), EdgeGuard(settings)
    assert isinstance(one.counter, RedisCounter)
    sender = f"shared-{time.time_ns()}"
    allowed = [guard_.check_text(sender, "привет")[1] is None for guard_ in (one, two) * 4]
    assert allowed.count(True) == 5  # one limit across both


def test_an_unreachable_redis_falls_back_to_counting_here():
    edge = EdgeGuard(EdgeSettings(redis_url="redis://127.0.0.1:9/0"))
    assert isinstance(edge.counter, LocalCounter)


# --- through the Rasa server's app ---------------------------------------------------------------


@pytest.fixture
def app(tmp_path, monkeypatch):
    from rasa.core.run import configure_app

    modes = tmp_path / "copilot.yml"
    modes.write_text("default: autonomous\n", encoding="utf-8")
    monkeypatch.setenv("HANDOFF_DATABASE_URL", f"sqlite:///{tmp_path / 'handoff.db'}")
    monkeypatch.setenv("HANDOFF_MODES_FILE", str(modes))
    monkeypatch.setattr(rasa_channel, "register", register_through_gateway)
    agent = FakeAgent()
    edge = EdgeGuard(EdgeSettings(sender_limit=5, address_limit=40, window_seconds=60), counter=LocalCounter())
    gateway = HandoverGateway(lambda: agent, [], edge=edge)
    monkeypatch.setattr("handoff.gateway.HandoverGateway", lambda *args, **kwargs: gateway)
    app = configure_app([RestInput()], enable_api=False, port=0)
    app.ctx.agent = agent
    app.ctx.fake_agent = agent
    return app


def post(app, body, headers=None):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    _, response = app.test_client.post("/webhooks/rest/webhook", data=data, headers=headers or {})
    return response


def test_every_bad_input_gets_a_clear_answer_and_none_reaches_the_nlu(app):
    agent = app.ctx.fake_agent
    for body, status, code in [
        ("[1, 2]", 400, "invalid_json"),
        ('{"sender": "b1"}', 400, "message_missing"),
        ('{"sender": "b1", "message": 5}', 400, "message_not_text"),
        ("not json", 400, "invalid_json"),
        (json.dumps({"sender": "x" * 300, "message": "hi"}), 400, "invalid_sender"),
    ]:
        response = post(app, body)
        assert (response.status, response.json["error"]["code"]) == (status, code), body
    started = time.monotonic()
    huge = post(app, {"sender": "b2", "message": "а" * 1_000_000})
    assert huge.status == 413 and time.monotonic() - started < 5
    long_reply = post(app, {"sender": "b3", "message": "а" * 10_000})
    assert long_reply.status == 200 and "слишком длинное" in long_reply.json[0]["text"]
    emoji = post(app, {"sender": "b4", "message": "😀😀"})
    assert emoji.status == 200 and "словами" in emoji.json[0]["text"]
    assert agent.handled == []  # none of it reached the NLU
    surrogate = post(app, {"sender": "b5", "message": "привет \ud83d"})
    assert surrogate.status == 200 and surrogate.json[0]["text"] == "эхо: привет \ufffd"


def test_a_burst_from_one_sender_is_slowed_down_and_others_go_on(app):
    replies = [post(app, {"sender": "burst", "message": f"вопрос {n}"}).json[0]["text"] for n in range(8)]
    assert replies[:5] == [f"эхо: вопрос {n}" for n in range(5)]
    assert all("подождите" in text for text in replies[5:])
    assert post(app, {"sender": "calm", "message": "привет"}).json[0]["text"] == "эхо: привет"


def test_a_burst_from_one_address_gets_429_with_retry_after(app):
    statuses = [post(app, {"sender": f"s{n}", "message": "привет"}).status for n in range(45)]
    assert statuses[:40] == [200] * 40 and set(statuses[40:]) == {429}
    refused = post(app, {"sender": "s99", "message": "привет"})
    assert refused.json["error"]["code"] == "too_many_requests" and int(refused.headers["retry-after"]) > 0
