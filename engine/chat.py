"""Chat with the running assistant from a terminal, through its REST channel — the way a REST
client of the product works: each message is a POST to ``/webhooks/rest/webhook``; operator
replies and the bot's lines outside a turn are pulled from the hand-over gateway
(``GET /handoff/conversations/<sender>/messages?after=<last id>``) while you type.

    python -m engine.chat [--url http://localhost:5005] [--sender me]

Unlike ``rasa shell`` it starts no server of its own: it talks to the stack's Rasa server (so a
hand-over reaches the operator console and the operator's answer comes back here).
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import urllib.error
import urllib.request
import uuid
from typing import Any, Dict, List, Optional
from urllib.parse import quote

POLL_SECONDS = 1.0


def _request(url: str, payload: Optional[Dict[str, Any]] = None, timeout: float = 60) -> Any:
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read() or b"null")


def render(message: Dict[str, Any]) -> List[str]:
    """A bot message (REST format) as terminal lines."""
    lines = []
    if message.get("text"):
        lines.append(str(message["text"]))
    for button in message.get("buttons") or ():
        lines.append(f"  [{button.get('title')}]  ({button.get('payload')})")
    if message.get("image"):
        lines.append(f"  (image) {message['image']}")
    handoff = (message.get("custom") or {}).get("handoff") if isinstance(message.get("custom"), dict) else None
    if handoff:
        lines.append(f"  — передано сотруднику, обращение №{handoff.get('ticket_id')}")
    return lines


class Chat:
    def __init__(self, url: str, sender: str) -> None:
        self.url = url.rstrip("/")
        self.sender = sender
        self.after = 0
        self.print_lock = threading.Lock()
        self.stopped = threading.Event()

    def say(self, text: str) -> List[Dict[str, Any]]:
        return _request(f"{self.url}/webhooks/rest/webhook", {"sender": self.sender, "message": text}) or []

    def pull(self) -> List[Dict[str, Any]]:
        try:
            pulled = _request(f"{self.url}/handoff/conversations/{quote(self.sender, safe='')}/messages?after={self.after}")
        except urllib.error.HTTPError as error:
            if error.code == 404:  # nothing said yet
                return []
            raise
        messages = pulled.get("messages") or []
        if messages:
            self.after = max(message["id"] for message in messages)
        return messages

    def show(self, who: str, lines: List[str]) -> None:
        with self.print_lock:
            for line in lines:
                print(f"{who}: {line}" if who else line, flush=True)

    def poll_forever(self) -> None:
        while not self.stopped.wait(POLL_SECONDS):
            try:
                for message in self.pull():
                    self.show("Оператор" if message["sender"] == "operator" else "Ассистент", [message["text"]])
            except (urllib.error.URLError, OSError, ValueError):
                pass  # the server restarts: try again at the next poll


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://localhost:5005", help="the Rasa server (default %(default)s)")
    parser.add_argument("--sender", default=None, help="conversation id (default: a new one)")
    args = parser.parse_args(argv)
    chat = Chat(args.url, args.sender or f"terminal-{uuid.uuid4().hex[:8]}")
    print(f"Conversation {chat.sender} with {chat.url}. Ctrl-D or /exit to quit.", flush=True)
    threading.Thread(target=chat.poll_forever, daemon=True).start()
    try:
        for line in sys.stdin:
            text = line.strip()
            if text in ("/exit", "/quit"):
                break
            if not text:
                continue
            try:
                replies = chat.say(text)
            except (urllib.error.URLError, OSError, ValueError) as error:
                chat.show("", [f"✗ the assistant did not answer: {error}"])
                continue
            for reply in replies:
                chat.show("Ассистент", render(reply))
    except KeyboardInterrupt:
        pass
    finally:
        chat.stopped.set()
    return 0


if __name__ == "__main__":
    sys.exit(main())
