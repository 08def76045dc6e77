"""Demo conversations played through the running stack's REST channel, so that a fresh install's
dashboard shows real numbers — computed from these conversations like from any others, never
written in. They only read the back office (no refund or resend is made) and cover every outcome:
confirmed by a button and by a typed «да» (with a rating), not resolved, resolved by a flow and then
silence (assumed once the session timeout passes), the escalation rules, a copilot topic, spam, the
wrong company, a flow left in the middle.

    python -m analytics demo [--url http://localhost:5005]
"""
from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
import uuid
from typing import Dict, List, Tuple

#: (name, the customer's messages, the outcome it should end with)
SCRIPTS: List[Tuple[str, List[str], str]] = [
    ("balance, confirmed and rated", ["хочу проверить баланс", "DRM-A1B2-C3D4-7Q2K", "1234", "/feedback_resolved",
                                      '/feedback_rating{"rating": "5"}'], "resolved_confirmed"),
    ("knowledge answer, a typed yes", ["сколько действует сертификат?", "да", '/feedback_rating{"rating": "4"}'],
     "resolved_confirmed"),
    ("knowledge answer, not resolved", ["можно ли вернуть сертификат?", "/feedback_unresolved"], "unresolved"),
    ("resend limit, then silence", ["сертификат не пришел, заказ 40817325", "да"], "resolved_assumed"),
    ("an operator, twice", ["позовите оператора", "нет, мне нужен живой человек"], "handed_over"),
    ("a threat", ["вы мошенники, я подам в суд"], "handed_over"),
    ("not understood twice", ["какая погода в казани", "посоветуйте рецепт борща"], "handed_over"),
    ("corporate documents (a copilot topic)", ["нужны закрывающие документы УПД"], "handed_over"),
    ("spam", ["Купите дешёвые кроссовки с доставкой! Скидки до 90%, переходите по ссылке"], "spam"),
    ("the wrong company", ["где мой заказ кроссовок из спортмастера"], "wrong_address"),
    ("a refund left in the middle", ["хочу вернуть деньги за заказ 40817263"], "abandoned"),
]


def _say(url: str, sender: str, text: str) -> List[Dict]:
    request = urllib.request.Request(
        f"{url.rstrip('/')}/webhooks/rest/webhook",
        data=json.dumps({"sender": sender, "message": text}).encode(), headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read() or b"[]")


def play(url: str, prefix: str = "demo") -> List[Tuple[str, str, str]]:
    """Play every script with a new sender; → (sender, name, the outcome it should end with)."""
    played = []
    run = uuid.uuid4().hex[:6]
    for number, (name, messages, expected) in enumerate(SCRIPTS):
        sender = f"{prefix}-{run}-{number:02d}"
        for text in messages:
            _say(url, sender, text)
        played.append((sender, name, expected))
    return played


def main(url: str) -> int:
    try:
        played = play(url)
    except (urllib.error.URLError, OSError, ValueError) as error:
        print(f"✗ the assistant at {url} did not answer ({error}): start it with ./scripts/run.sh", file=sys.stderr)
        return 1
    for sender, name, expected in played:
        print(f"  {sender}  {name} → {expected}")
    print(f"✓ {len(played)} conversations played. `python -m analytics report` counts them (conversations "
          "left silent count as finished once the session timeout has passed; until then they are «in progress»).")
    return 0
