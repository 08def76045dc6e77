"""Changing a topic's copilot mode: ``copilot.yml`` rewritten in place (its comments kept) and the
change audited in the hand-off database (who, when, from, to, why). The console applies the
analytics' autonomy advice with it; the gateway notices the new file (handoff.gateway.CopilotGate)."""
from __future__ import annotations

import os
import re
import tempfile
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, List, Optional

from ruamel.yaml import YAML
from sqlalchemy import select
from sqlalchemy.orm import Session

from handoff.copilot import CopilotModes, Mode
from handoff.errors import InvalidInput
from handoff.machine import HandoffService, iso
from handoff.models import ModeChange

_TOPIC = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_write_lock = threading.Lock()


@dataclass(frozen=True)
class ModeChangeView:
    topic: str
    from_mode: str
    to_mode: str
    operator: str
    reason: Optional[str]
    at: str

    def to_dict(self) -> Dict[str, Any]:
        return dict(vars(self))


def _write_file(path: Path, topic: str, mode: Mode) -> None:
    """Set ``topics.<topic>`` in the YAML file, keeping its comments; atomically (a reader never
    sees half a file)."""
    yaml = YAML()  # round trip: comments and order kept
    data = yaml.load(path.read_text(encoding="utf-8")) if path.exists() else None
    if data is None:
        data = yaml.load("default: autonomous\ntopics: {}\n")
    if data.get("topics") is None:
        data["topics"] = {}
    data["topics"][topic] = mode.value
    descriptor, temporary = tempfile.mkstemp(prefix=".copilot-", suffix=".yml", dir=str(path.parent))
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        yaml.dump(data, handle)
    os.replace(temporary, path)


def set_mode(service: HandoffService, path: Path, topic: Any, mode: Any, operator: str,
             reason: Optional[str] = None) -> ModeChangeView:
    """Move ``topic`` to ``mode``; audited. InvalidInput for an unknown mode or a malformed topic."""
    if not isinstance(topic, str) or not _TOPIC.match(topic):
        raise InvalidInput("A topic is an intent name.")
    try:
        target = Mode(mode)
    except ValueError:
        raise InvalidInput(f"A mode is one of {', '.join(m.value for m in Mode)}.") from None
    if reason is not None and (not isinstance(reason, str) or len(reason) > 500):
        raise InvalidInput("The reason is a text of at most 500 characters.")
    with _write_lock:
        current = CopilotModes.load(path).mode_for(topic)
        _write_file(path, topic, target)
        CopilotModes.load(path)  # still a valid modes file

        def work(session: Session, now: datetime) -> ModeChangeView:
            row = ModeChange(topic=topic, from_mode=current.value, to_mode=target.value, operator_id=operator,
                             reason=reason, at=now)
            session.add(row)
            session.flush()
            return ModeChangeView(topic, current.value, target.value, operator, reason, iso(now) or "")

        return service.write(work)


def mode_history(service: HandoffService, limit: int = 100) -> List[ModeChangeView]:
    query = select(ModeChange).order_by(ModeChange.id.desc()).limit(limit)
    return service.read(lambda session, now: [
        ModeChangeView(r.topic, r.from_mode, r.to_mode, r.operator_id, r.reason, iso(r.at) or "")
        for r in session.execute(query).scalars()
    ])
