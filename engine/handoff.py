"""Hand-over from the command line (for channels without an operator console at hand).

    python -m engine.handoff queue                 conversations waiting for a human
    python -m engine.handoff resume <conversation>  give a conversation back to the bot

Both work on the hand-off database (``HANDOFF_DATABASE_URL``, default ``handoff.db``), the only
record of who speaks in a conversation: resuming takes the conversation as the operator ``cli``
when it is still waiting, then returns it to the bot — the gateway in the Rasa server then greets
the customer back (``utter_handoff_returned``) and the next message is the bot's again.
"""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from handoff.errors import HandoffError
from handoff.machine import ConversationView, HandoffService, State
from handoff.settings import HandoffSettings

CLI_OPERATOR = "cli"


def give_back(service: HandoffService, conversation_id: str, operator: str = CLI_OPERATOR) -> ConversationView:
    """Return ``conversation_id`` to the bot, whoever holds it (a no-op when the bot has it)."""
    view = service.conversation(conversation_id, with_messages=False)
    if view.state is State.WAITING:
        view = service.take(conversation_id, operator)
    if view.state is not State.OPERATOR:
        return view
    return service.return_to_bot(conversation_id, view.operator_id or operator, reason="given back from the command line")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("queue", help="conversations waiting for a human")
    resume = commands.add_parser("resume", help="give a handed-over conversation back to the bot")
    resume.add_argument("conversation_id")
    args = parser.parse_args(argv)
    service = HandoffService.from_settings(HandoffSettings.from_env())
    if args.command == "queue":
        items = service.queue()
        for item in items:
            reason = (item.summary or {}).get("reason") or "-"
            print(f"{item.conversation_id}\tticket {item.ticket_id or '-'}\t{reason}\twaiting {item.waiting_seconds:.0f} s")
        if not items:
            print("nobody is waiting")
        return 0
    try:
        view = give_back(service, args.conversation_id)
    except HandoffError as error:
        print(f"✗ could not resume {args.conversation_id}: {error.message}", file=sys.stderr)
        return 1
    if view.state is State.BOT:
        print(f"✓ the bot answers {args.conversation_id} again")
        return 0
    print(f"✗ {args.conversation_id} is {view.state.value}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
