"""Giving a handed-over conversation back to the bot.

A hand-over pauses the conversation (``ConversationPaused``): Rasa keeps logging the customer's
messages but predicts nothing. To resume, the conversation gets a ``resume`` event followed by an
``action_listen``, so that the dialogue state again ends "waiting for the customer" and the next
message is handled as a fresh turn (without it the policies see two customer messages in a row).

    python -m engine.handoff resume <conversation_id> [--rasa-url http://localhost:5005]
"""
from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from typing import List, Optional
from urllib.parse import quote

RESUME_EVENTS = [{"event": "resume"}, {"event": "action", "name": "action_listen"}]


def resume_conversation(rasa_url: str, conversation_id: str, timeout: float = 10.0) -> bool:
    """Resume the bot in ``conversation_id``; → whether the conversation is active afterwards."""
    request = urllib.request.Request(
        f"{rasa_url.rstrip('/')}/conversations/{quote(conversation_id, safe='')}/tracker/events",
        data=json.dumps(RESUME_EVENTS).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        tracker = json.loads(response.read())
    return not tracker.get("paused", False)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    resume = commands.add_parser("resume", help="give a handed-over conversation back to the bot")
    resume.add_argument("conversation_id")
    resume.add_argument("--rasa-url", default="http://localhost:5005")
    args = parser.parse_args(argv)
    try:
        active = resume_conversation(args.rasa_url, args.conversation_id)
    except (urllib.error.URLError, OSError, ValueError) as error:
        print(f"✗ could not resume {args.conversation_id}: {error}", file=sys.stderr)
        return 1
    print(f"✓ the bot answers {args.conversation_id} again" if active else f"✗ {args.conversation_id} is still paused")
    return 0 if active else 1


if __name__ == "__main__":
    sys.exit(main())
