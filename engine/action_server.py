"""The stack's action server: ``rasa run actions`` with personal data masked in its logs
(:mod:`engine.log_masking`).

    python -m engine.action_server [any `rasa run actions` option]   (the run command starts it so)
"""
from __future__ import annotations

import sys
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> None:
    from engine.production import SECRETS_OF, InsecureConfiguration, require_secrets

    try:
        require_secrets("action server", SECRETS_OF["action server"])
    except InsecureConfiguration as error:
        print(f"✗ {error}", file=sys.stderr)
        sys.exit(2)
    from engine.log_masking import install_log_masking

    install_log_masking()
    from rasa_sdk.__main__ import main_from_args
    from rasa_sdk.endpoint import create_argument_parser

    main_from_args(create_argument_parser().parse_args(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    main()
