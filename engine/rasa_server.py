"""The stack's Rasa server: ``rasa run`` with the runtime fixes of :mod:`engine.rasa_runtime`,
personal data masked in its logs (:mod:`engine.log_masking`), and every channel going through
the hand-over gateway (:mod:`handoff.gateway`: who speaks in a conversation — the bot, the
operators' queue, an operator — for REST, the web chat and any other channel of credentials.yml).

    python -m engine.rasa_server [any `rasa run` option]      (the run command starts it so)
"""
from __future__ import annotations

import sys
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> None:
    from engine.production import SECRETS_OF, InsecureConfiguration, require_secrets

    try:
        require_secrets("Rasa server", SECRETS_OF["Rasa server"])
    except InsecureConfiguration as error:
        print(f"✗ {error}", file=sys.stderr)
        sys.exit(2)
    from engine.log_masking import install_log_masking
    from engine.rasa_runtime import apply_runtime_fixes

    install_log_masking()
    apply_runtime_fixes()
    from engine.telegram_channel import apply_telegram_fixes

    apply_telegram_fixes()  # TELEGRAM_API_URL; operator replies reach Telegram (engine/telegram_channel.py)
    from handoff.gateway import install_gateway

    install_gateway()
    from rasa.__main__ import main as rasa_main

    sys.argv = ["rasa", "run", *(sys.argv[1:] if argv is None else argv)]
    rasa_main()


if __name__ == "__main__":
    main()
