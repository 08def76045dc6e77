"""Production mode: ``SUPPORT_ASSISTANT_ENV=production`` makes each deployable refuse to start with
a default, empty or short secret, naming the variable — the development defaults
(``dev-backoffice-token``, ``dev-operator-token``, ``dev-trainer-token``, a conversation-state key generated into a file)
are public knowledge, fine on a laptop and a breach anywhere else.

    from engine.production import require_secrets
    require_secrets("operator console", ["HANDOFF_OPERATOR_TOKEN"])     # at the top of main()

Outside production mode nothing is checked.
"""
from __future__ import annotations

import os
from typing import Iterable, List, Mapping, Optional

MODE_VARIABLE = "SUPPORT_ASSISTANT_ENV"
#: the development defaults shipped in this repository
KNOWN_DEFAULTS = {
    "BACKOFFICE_API_TOKEN": "dev-backoffice-token",
    "HANDOFF_OPERATOR_TOKEN": "dev-operator-token",
    "REVIEW_TRAINER_TOKEN": "dev-trainer-token",
}
MIN_LENGTH = 16
#: what each deployable needs (the stack checks them all before it starts anything; the back office,
#: replaceable by another company's service, checks its own token itself: backoffice/__main__.py)
SECRETS_OF = {
    "back office": ["BACKOFFICE_API_TOKEN"],
    "action server": ["BACKOFFICE_API_TOKEN"],
    "Rasa server": ["CONVERSATION_STATE_KEY"],
    "operator console": ["HANDOFF_OPERATOR_TOKEN", "REVIEW_TRAINER_TOKEN"],  # operators; trainers (/review)
}


class InsecureConfiguration(RuntimeError):
    """A secret that must not be used in production."""


def is_production(environ: Optional[Mapping[str, str]] = None) -> bool:
    env = os.environ if environ is None else environ
    return (env.get(MODE_VARIABLE) or "").strip().lower() == "production"


def problems(names: Iterable[str], environ: Optional[Mapping[str, str]] = None) -> List[str]:
    """What is wrong with each secret (empty when all are fine)."""
    env = os.environ if environ is None else environ
    found = []
    for name in names:
        value = (env.get(name) or "").strip()
        if not value:
            found.append(f"{name} is not set")
        elif value == KNOWN_DEFAULTS.get(name) or value.lower().startswith("dev-"):
            found.append(f"{name} is the development default")
        elif any(len(part.strip()) < MIN_LENGTH for part in value.split(",")):
            found.append(f"{name} is shorter than {MIN_LENGTH} characters")
    return found


def require_secrets(component: str, names: Iterable[str], environ: Optional[Mapping[str, str]] = None) -> None:
    """In production mode, :class:`InsecureConfiguration` naming every bad variable."""
    if not is_production(environ):
        return
    found = problems(names, environ)
    if found:
        raise InsecureConfiguration(
            f"The {component} does not start in production mode ({MODE_VARIABLE}=production): "
            + "; ".join(found) + ". Set a long random value (e.g. `python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))'`)."
        )
