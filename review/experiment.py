"""The review loop, end to end, as a reproducible experiment ("Proof it works", docs/benchmarks.md#review-loop).

    .venv/bin/python -m review.experiment            # ≈ 10 min on 2 cores
        [--data tests/data/review_experiment.yml] [--output results/review_experiment.json] [--keep]

Starting from the landed model it feeds a batch of realistic misses written for that model
(``tests/data/review_experiment.yml``, not the held-out sets) to the running assistant as customers,
annotates what reaches the review inbox through the console API as a trainer would, retrains
through the console, and measures before and after. Nothing in this checkout changes except the
JSON report (``results/`` is git-ignored); the report says whether ``data/``, ``models/``, the
review state, the index and the databases of the checkout were left untouched:

1. **A copy.** The files git knows or would add (tracked + untracked, not ignored), the newest
   ``models/*.tar.gz`` and ``spacy_models/`` are copied to a temporary folder (not ``.venv``); every
   process runs there, with ``PYTHONPATH`` on the copy and every database, index, state folder and
   port of its own.
2. **The real stack.** ``python -m engine.stack --skip-train`` in the copy (back office, action
   server, Rasa, operator console with the review API, web chat) on free loopback ports, its own
   ``STACK_STATE_DIR``, a random ``REVIEW_TRAINER_TOKEN``, ``RAG_KB_CHECK_SECONDS=5`` and the
   per-address rate limit raised (``EDGE_ADDRESS_LIMIT``: all the experiment's customers come from
   127.0.0.1). It is stopped however the run ends (SIGINT, then SIGKILL of every process group it
   started) and the copy is deleted (``--keep`` keeps it).
3. **BEFORE**, on the running stack:
   - *held-out intent accuracy* and *out-of-scope detection*: ``tests/data/nlu_heldout.yml`` and
     ``tests/data/out_of_scope_heldout.txt`` through ``POST /model/parse`` of the running Rasa, scored
     like ``review.evaluate`` (``nlu_fallback`` and ``out_of_scope`` are one answer);
   - *nlu check / feed accuracy*: the experiment's messages, the same way;
   - *knowledge-base answer rate* — the share of questions **answered from the right article** —
     on the kb check questions, the kb feed questions and ``tests/data/rag_golden.yml``, measured
     twice. **As customers get it** (the table's main rows): each question is a customer's first
     message in a new conversation through the REST channel (``POST /webhooks/rest/webhook``, a
     fresh sender each); a reply that ends with the answerer's «Подробнее: «<title>».» is an answer
     from that article, ``utter_kb_clarify`` is a clarifying question, ``utter_kb_no_answer`` /
     ``utter_default`` no answer, anything else (a flow the NLU started, a hand-over) "other" — so
     the NLU's routing counts, as it does for a customer. **The knowledge service alone**: the
     same question to the action server's read-only ``action_copilot_draft`` (the index the
     assistant answers from; no conversation, no miss recorded) — retrieval and thresholds only;
     on the golden unanswerable questions any answer is a false one, and on the answerable ones
     an answer from another article is a wrong one (aliases change the whole index's term
     statistics, so they can move other questions too).
4. **Feed.** Every ``feed`` message (nlu and kb) is sent once through REST as a customer, a fresh
   sender each, so it lands in the event stream the inbox reads.
5. **Annotate**, as the trainer, through the console API only: ``GET /api/review/inbox?area=nlu``
   and ``?area=kb`` (``since`` = the start of the feed, so the measurements' own conversations
   are not in it); for every cluster, each wording that is a feed message gets its gold label
   from the data file — ``POST /api/review/annotate {texts, intent}`` for the nlu part,
   ``POST /api/review/kb/alias {texts, article}`` for the kb part (a cluster may mix both: per
   wording). Wordings that are not feed messages are left alone; feed messages that never reached
   the inbox are reported with what the NLU said (a confident wrong intent raises no miss).
   Accepted and refused decisions are counted with their reasons.
6. **Retrain** through ``POST /api/review/retrain {"load": true}``, polling ``GET
   /api/review/retrain`` until it ends; its own before/after held-out evaluation is recorded. A new
   model not worse than the running one is loaded into the running Rasa (``PUT /model``); the
   knowledge service re-indexes the articles the aliases changed within ``RAG_KB_CHECK_SECONDS``.
7. **AFTER**: the same measurements as BEFORE; a Markdown table (before / after / Δ) is printed
   and the JSON report (every message with its label and both predictions, the inbox, every
   decision, the retrain status, timings) is written to ``--output``.

The check messages are never sent before BEFORE's measurement and never annotated: they measure
whether the fix generalises to other wordings of the same needs. The kb measurements of BEFORE
do reach the event stream (they are conversations), which is why the trainer reads the inbox
from the start of the feed only.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = Path("tests") / "data" / "review_experiment.yml"
DEFAULT_OUTPUT = Path("results") / "review_experiment.json"
HELDOUT_NLU = Path("tests") / "data" / "nlu_heldout.yml"
HELDOUT_OOS = Path("tests") / "data" / "out_of_scope_heldout.txt"
GOLDEN = Path("tests") / "data" / "rag_golden.yml"
BACKGROUND = ("nlu_fallback", "out_of_scope")
FINISHED = ("loaded", "accepted", "rejected", "failed")
KB_CHECK_SECONDS = 5
SOURCE_LINE = re.compile(r"Подробнее: «(.+)»\.?\s*$")


def log(message: str) -> None:
    stamp = datetime.now().strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", flush=True)


# --- data -------------------------------------------------------------------------------------


def normalise(text: str) -> str:
    from review.inbox import normalise as inbox_normalise

    return inbox_normalise(text)


def load_data(path: Path) -> Dict[str, Any]:
    """The experiment's messages: ``{"nlu": {"feed"|"check": [(text, intent)]}, "kb": {…: [(text, article)]}}``."""
    from ruamel.yaml import YAML

    raw = YAML(typ="safe").load(path.read_text(encoding="utf-8")) or {}
    data: Dict[str, Any] = {"nlu": {"feed": [], "check": []}, "kb": {"feed": [], "check": []}}
    for group in raw.get("nlu") or []:
        for part in ("feed", "check"):
            data["nlu"][part] += [(str(text), str(group["intent"])) for text in group.get(part) or []]
    for group in raw.get("kb") or []:
        for part in ("feed", "check"):
            data["kb"][part] += [(str(text), str(group["article"])) for text in group.get(part) or []]
    seen: Dict[str, str] = {}
    for area in ("nlu", "kb"):
        for part in ("feed", "check"):
            for text, _ in data[area][part]:
                key = normalise(text)
                if key in seen:
                    raise ValueError(f"{path}: «{text}» is given twice ({seen[key]} and {area}/{part})")
                seen[key] = f"{area}/{part}"
    return data


def load_heldout(project: Path) -> Tuple[List[Tuple[str, str]], List[str]]:
    from nlu.evaluation import load_examples, read_lines

    examples = [(example.text, example.intent) for example in load_examples(project / HELDOUT_NLU)]
    return examples, read_lines(project / HELDOUT_OOS)


def load_golden(project: Path) -> Tuple[List[Tuple[str, str]], List[str]]:
    from ruamel.yaml import YAML

    raw = YAML(typ="safe").load((project / GOLDEN).read_text(encoding="utf-8")) or {}
    answerable = [(str(item["question"]), str(item["article"])) for item in raw.get("answerable") or []]
    unanswerable = [str(item["question"] if isinstance(item, Mapping) else item)
                    for item in raw.get("unanswerable") or []]
    return answerable, unanswerable


# --- the copy ---------------------------------------------------------------------------------


def copy_project(target: Path) -> Path:
    """The checkout's files (tracked + untracked, not ignored), the newest model and the spaCy
    pipeline, copied to ``target``; the model's path in the copy."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            check=True, capture_output=True).stdout.decode("utf-8").split("\0")
    count = 0
    for relative in filter(None, listed):
        source = ROOT / relative
        if not source.is_file():  # deleted in the working tree
            continue
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, destination)
        count += 1
    models = sorted((ROOT / "models").glob("*.tar.gz"), key=lambda path: path.stat().st_mtime)
    if not models:
        raise SystemExit("no model in models/: train one first (rasa train)")
    (target / "models").mkdir(parents=True, exist_ok=True)
    model = target / "models" / models[-1].name
    shutil.copy2(models[-1], model)
    if (ROOT / "spacy_models").is_dir():
        shutil.copytree(ROOT / "spacy_models", target / "spacy_models", symlinks=True)
    log(f"copied {count} project files, {model.name} and spacy_models/ to {target}")
    return model


#: what the review loop writes when it runs in a project: training data, articles, models, its
#: state, the index and the databases — none of it may change in this checkout
WATCHED = ("data", "models", ".review", ".qdrant", ".stack")


def checkout_state() -> List[Tuple[str, int, int]]:
    """(path, size, mtime) of every file the review loop would write in this checkout (``WATCHED``
    and the SQLite files in the root), to prove that the experiment touched none of them (other
    people's edits elsewhere in the checkout do not count)."""
    found = []
    paths = [path for name in WATCHED for path in (ROOT / name).rglob("*")] + list(ROOT.glob("*.db"))
    for path in paths:
        try:
            stat = path.stat()
        except OSError:
            continue
        if path.is_file():
            found.append((str(path.relative_to(ROOT)), stat.st_size, stat.st_mtime_ns))
    return sorted(found)


# --- HTTP -------------------------------------------------------------------------------------


class HttpError(RuntimeError):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:300]}")
        self.status, self.body = status, body


def http(method: str, url: str, payload: Any = None, headers: Optional[Mapping[str, str]] = None,
         timeout: float = 120.0) -> Any:
    data = None if payload is None else json.dumps(payload).encode("utf-8")
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
    except urllib.error.HTTPError as error:
        raise HttpError(error.code, error.read().decode("utf-8", "replace")) from None
    return json.loads(body) if body else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- the stack --------------------------------------------------------------------------------


def _children_of() -> Dict[int, List[int]]:
    children: Dict[int, List[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as handle:
                stat = handle.read()
        except OSError:
            continue
        parent = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(parent, []).append(int(entry))
    return children


def descendants(pid: int) -> List[int]:
    tree, found, queue = _children_of(), [], [pid]
    while queue:
        for child in tree.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


class Stack:
    """``python -m engine.stack --skip-train`` in the copy, on ports of its own."""

    def __init__(self, project: Path, work: Path) -> None:
        self.project, self.work = project, work
        self.ports = {name: free_port() for name in ("rasa", "action", "backoffice", "webchat", "console")}
        self.trainer_token = "experiment-" + secrets.token_hex(12)
        self.process: Optional[subprocess.Popen] = None
        self.log_path = work / "stack.log"
        self._known: Dict[int, int] = {}  # pid → process group, of everything the stack started

    @property
    def rasa_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['rasa']}"

    @property
    def action_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['action']}"

    @property
    def console_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['console']}"

    def env(self) -> Dict[str, str]:
        env = {name: value for name, value in os.environ.items()
               if not name.startswith(("RAG_", "REVIEW_", "EDGE_", "STACK_", "HANDOFF_", "BACKOFFICE_"))
               and name not in ("CONVERSATIONS_DATABASE_URL", "EVENTS_DATABASE_URL", "LOCK_STORE_URL",
                                "RASA_MODELS_DIR", "ACTION_SERVER_URL", "CONVERSATION_STATE_KEY",
                                "SUPPORT_ASSISTANT_ENV", "PYTHONPATH")}
        data = self.work / "data"
        data.mkdir(parents=True, exist_ok=True)
        env.update({
            "PYTHONPATH": str(self.project),
            "TF_CPP_MIN_LOG_LEVEL": "3",
            "RASA_TELEMETRY_ENABLED": "false",
            "STACK_HOST": "127.0.0.1",
            "STACK_PUBLIC_HOST": "127.0.0.1",
            "STACK_STATE_DIR": str(self.work / "state"),
            "STACK_RESTART_BACKOFF_MAX": "2",
            "RASA_PORT": str(self.ports["rasa"]),
            "ACTION_SERVER_PORT": str(self.ports["action"]),
            "BACKOFFICE_PORT": str(self.ports["backoffice"]),
            "WEBCHAT_PORT": str(self.ports["webchat"]),
            "HANDOFF_CONSOLE_PORT": str(self.ports["console"]),
            "RASA_MODELS_DIR": str(self.project / "models"),
            "CONVERSATIONS_DATABASE_URL": f"sqlite:///{data / 'conversations.db'}",
            "EVENTS_DATABASE_URL": f"sqlite:///{data / 'events.db'}",
            "HANDOFF_DATABASE_URL": f"sqlite:///{data / 'handoff.db'}",
            "BACKOFFICE_DATABASE_URL": f"sqlite:///{data / 'backoffice.db'}",
            "CONVERSATION_STATE_KEY": "review-experiment-" + secrets.token_hex(8),
            "RAG_KB_DIR": str(self.project / "data" / "kb"),
            "RAG_QDRANT_PATH": str(self.project / ".qdrant"),
            "RAG_KB_CHECK_SECONDS": str(KB_CHECK_SECONDS),
            "REVIEW_TRAINER_TOKEN": self.trainer_token,
            "REVIEW_PROJECT_ROOT": str(self.project),
            "REVIEW_KB_DIR": str(self.project / "data" / "kb"),
            "REVIEW_STATE_DIR": str(self.project / ".review"),
            # every customer of the experiment writes from 127.0.0.1
            "EDGE_ADDRESS_LIMIT": "1000000",
        })
        return env

    def start(self, timeout: float = 600.0) -> None:
        log(f"starting the stack in the copy (Rasa :{self.ports['rasa']}, console :{self.ports['console']}, "
            f"actions :{self.ports['action']}); its log: {self.log_path}")
        output = open(self.log_path, "w", encoding="utf-8")
        self.process = subprocess.Popen([sys.executable, "-m", "engine.stack", "--skip-train"], cwd=self.project,
                                        env=self.env(), stdout=output, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
        output.close()
        deadline = time.monotonic() + timeout
        while "The assistant is running" not in self.log_path.read_text(encoding="utf-8", errors="replace"):
            self._remember()
            if self.process.poll() is not None:
                raise RuntimeError(f"the stack exited with code {self.process.returncode}:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the stack did not start within {timeout:.0f} s:\n{self.tail()}")
            time.sleep(1.0)
        self._remember()

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _remember(self) -> None:
        """Notes every process the stack runs (the supervisor starts each in a session of its own,
        so the stack's group alone does not hold them)."""
        if self.process is None:
            return
        for pid in descendants(self.process.pid):
            try:
                self._known.setdefault(pid, os.getpgid(pid))
            except ProcessLookupError:
                pass

    def stop(self) -> None:
        if self.process is None:
            return
        self._remember()
        if self.process.poll() is None:
            log("stopping the stack")
            self.process.send_signal(signal.SIGINT)  # the stack stops its services like on Ctrl-C
            try:
                self.process.wait(timeout=90)
            except subprocess.TimeoutExpired:
                pass
        groups = {self.process.pid} | set(self._known.values())
        for group in groups:
            try:
                os.killpg(group, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for pid in self._known:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self.process.poll() is None:
            self.process.wait(timeout=30)


# --- talking to it ----------------------------------------------------------------------------


class Assistant:
    """The running stack as customers, the NLU, the knowledge service and a trainer see it."""

    def __init__(self, stack: Stack, project: Path) -> None:
        self.stack = stack
        self.titles = self._titles(project)
        self.replies = self._replies(project)
        self.trainer = {"Authorization": f"Bearer {stack.trainer_token}", "X-Trainer": "experiment"}

    @staticmethod
    def _titles(project: Path) -> Dict[str, str]:
        from rag.documents import load_articles

        return {article.title: article.id for article in load_articles(project / "data" / "kb")}

    @staticmethod
    def _replies(project: Path) -> Dict[str, List[str]]:
        """The start of each reply that tells the knowledge base's outcome (from domain.yml)."""
        from ruamel.yaml import YAML

        domain = YAML(typ="safe").load((project / "domain.yml").read_text(encoding="utf-8")) or {}
        responses = domain.get("responses") or {}
        found: Dict[str, List[str]] = {}
        for name in ("utter_kb_clarify", "utter_kb_no_answer", "utter_default"):
            found[name] = [str(variant.get("text") or "").split("{", 1)[0].strip()
                           for variant in responses.get(name) or [] if variant.get("text")]
        return found

    # the NLU

    def parse(self, text: str) -> Dict[str, Any]:
        parsed = http("POST", f"{self.stack.rasa_url}/model/parse", {"text": text})
        intent = parsed.get("intent") or {}
        ranking = [r for r in parsed.get("intent_ranking") or [] if r.get("name") != "nlu_fallback"]
        return {"intent": intent.get("name"), "confidence": round(float(intent.get("confidence") or 0.0), 4),
                "top": ranking[0]["name"] if ranking else None,
                "top_confidence": round(float(ranking[0]["confidence"]), 4) if ranking else None}

    def model(self) -> Optional[str]:
        status = http("GET", f"{self.stack.rasa_url}/status")
        return Path(str(status.get("model_file") or "")).name or None

    # customers

    def ask(self, text: str, sender: str) -> Dict[str, Any]:
        """``text`` as a customer's first message in a new conversation; what came back."""
        replies = http("POST", f"{self.stack.rasa_url}/webhooks/rest/webhook", {"sender": sender, "message": text})
        texts = [str(reply.get("text") or "") for reply in replies or [] if isinstance(reply, Mapping)]
        custom = [reply.get("custom") for reply in replies or [] if isinstance(reply, Mapping) and reply.get("custom")]
        status, article = "other", None
        for reply in texts:
            match = SOURCE_LINE.search(reply)
            if match and match.group(1) in self.titles:
                status, article = "answered", self.titles[match.group(1)]
                break
            if any(reply.startswith(start) for start in self.replies["utter_kb_clarify"] if start):
                status = "clarify"
                break
            if any(reply.startswith(start) for name in ("utter_kb_no_answer", "utter_default")
                   for start in self.replies[name] if start):
                status = "no_answer"
                break
        handoff = any(isinstance(item, Mapping) and item.get("handoff") for item in custom)
        return {"status": status, "article": article, "reply": (texts[0][:160] if texts else ""), "handoff": handoff}

    # the knowledge service alone

    def kb_alone(self, text: str) -> Dict[str, Any]:
        """The action server's knowledge service on ``text`` (read-only: what an operator's draft gets)."""
        payload = {
            "next_action": "action_copilot_draft", "sender_id": "review-experiment", "version": "3.6", "domain": {},
            "tracker": {"sender_id": "review-experiment", "slots": {}, "events": [], "paused": False,
                        "latest_message": {"text": text, "intent": {}, "entities": []}, "followup_action": None,
                        "active_loop": {}, "latest_action_name": "action_listen"},
        }
        result = http("POST", f"{self.stack.action_url}/webhook", payload, timeout=120)
        for response in (result or {}).get("responses") or []:
            draft = (response.get("custom") or {}).get("copilot_draft") if isinstance(response, Mapping) else None
            if isinstance(draft, Mapping):
                return {"status": draft.get("status"), "article": draft.get("article_id"),
                        "score": round(float(draft.get("score") or 0.0), 4)}
        raise RuntimeError(f"the action server returned no draft for «{text}»: {result}")

    # the trainer

    def inbox(self, since: str, area: Optional[str] = None) -> Dict[str, Any]:
        query = {"since": since, **({"area": area} if area else {})}
        return http("GET", f"{self.stack.console_url}/api/review/inbox?{urllib.parse.urlencode(query)}",
                    headers=self.trainer, timeout=600)

    def trainer_post(self, path: str, payload: Any) -> Tuple[int, Any]:
        try:
            return 200, http("POST", f"{self.stack.console_url}{path}", payload, headers=self.trainer, timeout=600)
        except HttpError as error:
            try:
                return error.status, json.loads(error.body)
            except ValueError:
                return error.status, {"error": {"message": error.body}}

    def retrain_status(self) -> Dict[str, Any]:
        return http("GET", f"{self.stack.console_url}/api/review/retrain", headers=self.trainer, timeout=60)


# --- measuring --------------------------------------------------------------------------------


def canonical(intent: Optional[str]) -> str:
    return "nlu_fallback" if not intent or intent in BACKGROUND else str(intent)


def rate(values: Sequence[bool]) -> Optional[float]:
    return (sum(1 for value in values if value) / len(values)) if values else None


def nlu_items(assistant: Assistant, items: Sequence[Tuple[str, str]]) -> List[Dict[str, Any]]:
    found = []
    for text, gold in items:
        parsed = assistant.parse(text)
        found.append({"text": text, "gold": gold, **parsed, "correct": canonical(parsed["intent"]) == canonical(gold)})
    return found


def kb_items(assistant: Assistant, items: Sequence[Tuple[str, Optional[str]]], phase: str, label: str
             ) -> List[Dict[str, Any]]:
    """Each question as a customer (REST, a new conversation) and to the knowledge service alone."""
    found = []
    for index, (text, gold) in enumerate(items):
        sender = f"exp-{phase}-{label}-{index}-{uuid.uuid4().hex[:6]}"
        parsed = assistant.parse(text)
        customer = assistant.ask(text, sender)
        alone = assistant.kb_alone(text)
        found.append({
            "text": text, "gold": gold, "nlu": parsed["intent"], "nlu_confidence": parsed["confidence"],
            "customer": customer, "alone": alone,
            "customer_right": customer["status"] == "answered" and customer["article"] == gold,
            "alone_right": alone["status"] == "answered" and alone["article"] == gold,
        })
    return found


def measure(assistant: Assistant, data: Dict[str, Any], heldout: Tuple[List[Tuple[str, str]], List[str]],
            golden: Tuple[List[Tuple[str, str]], List[str]], phase: str) -> Dict[str, Any]:
    started = time.monotonic()
    examples, oos = heldout
    log(f"{phase}: held-out set ({len(examples)} + {len(oos)} out-of-scope) through /model/parse")
    heldout_items = nlu_items(assistant, examples)
    oos_items = nlu_items(assistant, [(text, "out_of_scope") for text in oos])
    log(f"{phase}: the experiment's nlu messages through /model/parse")
    nlu_check = nlu_items(assistant, data["nlu"]["check"])
    nlu_feed = nlu_items(assistant, data["nlu"]["feed"])
    log(f"{phase}: knowledge-base questions as customers (REST) and to the knowledge service alone")
    kb_check = kb_items(assistant, data["kb"]["check"], phase, "kbcheck")
    kb_feed = kb_items(assistant, data["kb"]["feed"], phase, "kbfeed")
    answerable, unanswerable = golden
    log(f"{phase}: golden set ({len(answerable)} answerable + {len(unanswerable)} unanswerable)")
    golden_answerable = kb_items(assistant, answerable, phase, "golden")
    golden_unanswerable = kb_items(assistant, [(text, None) for text in unanswerable], phase, "offtopic")
    in_scope = [item for item in heldout_items if canonical(item["gold"]) != "nlu_fallback"]
    metrics = {
        "model": assistant.model(),
        "heldout_intent_accuracy": rate([item["correct"] for item in heldout_items]),
        "heldout_false_fallback_rate": rate([canonical(item["intent"]) == "nlu_fallback" for item in in_scope]),
        "heldout_oos_detection": rate([item["correct"] for item in oos_items]),
        "nlu_check_accuracy": rate([item["correct"] for item in nlu_check]),
        "nlu_feed_accuracy": rate([item["correct"] for item in nlu_feed]),
        "kb_check_answer_rate": rate([item["customer_right"] for item in kb_check]),
        "kb_feed_answer_rate": rate([item["customer_right"] for item in kb_feed]),
        "golden_answer_rate": rate([item["customer_right"] for item in golden_answerable]),
        "kb_check_answer_rate_alone": rate([item["alone_right"] for item in kb_check]),
        "kb_feed_answer_rate_alone": rate([item["alone_right"] for item in kb_feed]),
        "golden_answer_rate_alone": rate([item["alone_right"] for item in golden_answerable]),
        "kb_check_wrong_article_rate_alone": rate([item["alone"]["status"] == "answered" and not item["alone_right"]
                                                   for item in kb_check]),
        "kb_feed_wrong_article_rate_alone": rate([item["alone"]["status"] == "answered" and not item["alone_right"]
                                                  for item in kb_feed]),
        "golden_wrong_article_rate_alone": rate([item["alone"]["status"] == "answered" and not item["alone_right"]
                                                 for item in golden_answerable]),
        "golden_false_answer_rate_alone": rate([item["alone"]["status"] == "answered" for item in golden_unanswerable]),
        "golden_false_answer_rate": rate([item["customer"]["status"] == "answered" for item in golden_unanswerable]),
    }
    outcomes = {name: dict(Counter(item["customer"]["status"] for item in items))
                for name, items in (("kb_check", kb_check), ("kb_feed", kb_feed), ("golden", golden_answerable))}
    outcomes.update({f"{name}_alone": dict(Counter(item["alone"]["status"] for item in items))
                     for name, items in (("kb_check", kb_check), ("kb_feed", kb_feed), ("golden", golden_answerable))})
    heldout_confusions = Counter((item["gold"], canonical(item["intent"])) for item in heldout_items + oos_items
                                 if not item["correct"])
    log(f"{phase}: done in {time.monotonic() - started:.0f} s")
    return {
        "metrics": metrics,
        "counts": {"heldout": len(heldout_items), "oos": len(oos_items), "nlu_check": len(nlu_check),
                   "nlu_feed": len(nlu_feed), "kb_check": len(kb_check), "kb_feed": len(kb_feed),
                   "golden_answerable": len(golden_answerable), "golden_unanswerable": len(golden_unanswerable)},
        "kb_outcomes": outcomes,
        "heldout_errors": [{"gold": gold, "predicted": predicted, "count": count}
                           for (gold, predicted), count in heldout_confusions.most_common()],
        "items": {"nlu_check": nlu_check, "nlu_feed": nlu_feed, "kb_check": kb_check, "kb_feed": kb_feed,
                  "golden_answerable": golden_answerable, "golden_unanswerable": golden_unanswerable},
        "seconds": round(time.monotonic() - started, 1),
    }


# --- feeding and annotating -------------------------------------------------------------------


def feed(assistant: Assistant, data: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Every feed message once, as a customer in a new conversation (a week of traffic, shuffled)."""
    messages = [("nlu", text, label) for text, label in data["nlu"]["feed"]]
    messages += [("kb", text, label) for text, label in data["kb"]["feed"]]
    random.Random(12).shuffle(messages)
    sent = []
    for index, (area, text, label) in enumerate(messages):
        reply = assistant.ask(text, f"exp-feed-{index}-{uuid.uuid4().hex[:6]}")
        sent.append({"area": area, "text": text, "label": label, "reply": reply})
    return sent


def wait_for_inbox(assistant: Assistant, since: str, feed_keys: set, timeout: float = 300.0) -> Dict[str, Any]:
    """The inbox once the fed messages stop arriving in it (the event broker writes as it goes)."""
    deadline, last, stable_since = time.monotonic() + timeout, -1, time.monotonic()
    while True:
        inbox = assistant.inbox(since)
        seen = {normalise(item["text"]) for cluster in inbox["clusters"] for item in cluster["texts"]} & feed_keys
        if len(seen) != last:
            last, stable_since = len(seen), time.monotonic()
        elif time.monotonic() - stable_since >= 8 or len(seen) == len(feed_keys):
            return inbox
        if time.monotonic() > deadline:
            return inbox
        time.sleep(2.0)


def annotate(assistant: Assistant, data: Dict[str, Any], since: str) -> Dict[str, Any]:
    """The trainer's pass over the inbox: each feed wording gets its gold label from the data."""
    nlu_gold = {normalise(text): intent for text, intent in data["nlu"]["feed"]}
    kb_gold = {normalise(text): article for text, article in data["kb"]["feed"]}
    decisions: List[Dict[str, Any]] = []
    views: Dict[str, Any] = {}
    skipped: List[Dict[str, Any]] = []
    for area in ("nlu", "kb"):
        inbox = assistant.inbox(since, area)
        views[area] = {"clusters": len(inbox["clusters"]), "open": inbox.get("open"), "kinds": inbox.get("kinds"),
                       "sizes": Counter(len(cluster["texts"]) for cluster in inbox["clusters"])}
        for cluster in inbox["clusters"]:
            by_label: Dict[Tuple[str, str], List[str]] = {}
            for item in cluster["texts"]:
                key = normalise(item["text"])
                if key in nlu_gold:
                    by_label.setdefault(("intent", nlu_gold[key]), []).append(item["text"])
                elif key in kb_gold:
                    by_label.setdefault(("article", kb_gold[key]), []).append(item["text"])
                else:
                    skipped.append({"area": area, "text": item["text"], "kinds": cluster.get("kinds")})
            for (kind, label), texts in by_label.items():
                if kind == "intent":
                    status, result = assistant.trainer_post("/api/review/annotate", {"texts": texts, "intent": label})
                else:
                    status, result = assistant.trainer_post("/api/review/kb/alias", {"texts": texts, "article": label})
                results = (result or {}).get("results") if status == 200 else None
                for text in texts:
                    outcome = next((r for r in results or [] if normalise(r.get("text", "")) == normalise(text)), None)
                    if outcome is None:  # the whole request was refused
                        error = (result or {}).get("error") or {}
                        outcome = {"status": "refused", "code": error.get("code") or f"http_{status}",
                                   "reason": error.get("message")}
                    decisions.append({
                        "area": area, "cluster": cluster.get("key"), "cluster_area": cluster.get("area"),
                        "kinds": cluster.get("kinds"), "text": text, "label_kind": kind, "label": label,
                        "status": outcome.get("status"), "code": outcome.get("code"),
                        "reason": outcome.get("reason"), "file": outcome.get("file"),
                    })
    return {"views": views, "decisions": decisions, "skipped": skipped}


def retrain(assistant: Assistant, timeout: float = 3600.0) -> Dict[str, Any]:
    status, started = assistant.trainer_post("/api/review/retrain", {"load": True})
    if status not in (200, 202):
        raise RuntimeError(f"the retrain was not started: HTTP {status} {started}")
    log(f"retrain {started.get('job_id')} started")
    deadline, last = time.monotonic() + timeout, None
    while True:
        time.sleep(10.0)
        current = assistant.retrain_status()
        line = (current.get("state"), current.get("step"), current.get("progress"))
        if line != last:
            log(f"retrain: {current.get('state')} step={current.get('step')} progress={current.get('progress')} "
                f"elapsed={current.get('elapsed_seconds')} s")
            last = line
        if current.get("state") in FINISHED:
            return current
        if time.monotonic() > deadline:
            raise TimeoutError(f"the retrain did not finish within {timeout:.0f} s: {current}")


def wait_for_reindex(assistant: Assistant, kb_feed: Sequence[Tuple[str, str]]) -> None:
    """The knowledge service re-indexes a changed folder before the first question asked more than
    ``RAG_KB_CHECK_SECONDS`` after its last check: wait that long, then ask once."""
    time.sleep(KB_CHECK_SECONDS + 2)
    if kb_feed:
        assistant.kb_alone(kb_feed[0][0])


# --- the report -------------------------------------------------------------------------------

ROWS = (
    ("held-out intent accuracy", "heldout_intent_accuracy", "heldout"),
    ("held-out out-of-scope detection", "heldout_oos_detection", "oos"),
    ("nlu check accuracy (never annotated)", "nlu_check_accuracy", "nlu_check"),
    ("nlu feed accuracy (annotated)", "nlu_feed_accuracy", "nlu_feed"),
    ("KB check answer rate (never aliased)", "kb_check_answer_rate", "kb_check"),
    ("KB feed answer rate (aliased)", "kb_feed_answer_rate", "kb_feed"),
    ("golden answer rate", "golden_answer_rate", "golden_answerable"),
    ("KB check answer rate, knowledge service alone", "kb_check_answer_rate_alone", "kb_check"),
    ("KB feed answer rate, knowledge service alone", "kb_feed_answer_rate_alone", "kb_feed"),
    ("golden answer rate, knowledge service alone", "golden_answer_rate_alone", "golden_answerable"),
    ("KB check answered from a wrong article, service alone", "kb_check_wrong_article_rate_alone", "kb_check"),
    ("KB feed answered from a wrong article, service alone", "kb_feed_wrong_article_rate_alone", "kb_feed"),
    ("golden answered from a wrong article, service alone", "golden_wrong_article_rate_alone", "golden_answerable"),
    ("golden unanswerable answered (false answers), service alone", "golden_false_answer_rate_alone",
     "golden_unanswerable"),
)


def table(before: Dict[str, Any], after: Optional[Dict[str, Any]]) -> str:
    def fmt(value: Optional[float]) -> str:
        return "—" if value is None else f"{value:.3f}"

    lines = ["| metric (n) | before | after | Δ |", "|---|---|---|---|"]
    for title, key, count in ROWS:
        b = before["metrics"].get(key)
        a = after["metrics"].get(key) if after else None
        delta = "—" if a is None or b is None else f"{(a - b) * 100:+.1f} pt"
        lines.append(f"| {title} ({before['counts'][count]}) | {fmt(b)} | {fmt(a)} | {delta} |")
    return "\n".join(lines)


def summary(report: Dict[str, Any]) -> str:
    lines = []
    fed = report.get("feed") or []
    if fed:
        lines.append(f"fed: {len(fed)} messages ({sum(1 for f in fed if f['area'] == 'nlu')} nlu, "
                     f"{sum(1 for f in fed if f['area'] == 'kb')} kb)")
    review = report.get("review") or {}
    if review:
        decisions = review["decisions"]
        by = Counter((d["label_kind"], d["status"], d.get("code")) for d in decisions)
        lines.append(f"inbox (since the feed): {review['inbox_open']} open misses in {review['inbox_clusters']} "
                     f"clusters; {review['feed_in_inbox']} of {len(fed)} fed messages reached it")
        intents = [d for d in decisions if d["label_kind"] == "intent"]
        in_kb_tab = sum(1 for d in intents if d["cluster_area"] == "kb")
        lines.append(f"{in_kb_tab} of the {len(intents)} wordings annotated with an intent were in clusters the "
                     "inbox puts under area=kb")
        lines.append("decisions: " + ", ".join(
            f"{kind} {status}{f' ({code})' if code and status != 'accepted' else ''}: {n}"
            for (kind, status, code), n in sorted(by.items(), key=str)))
    job = report.get("retrain") or {}
    if job:
        before, after = job.get("before") or {}, job.get("after") or {}
        lines.append(f"retrain: {job.get('state')} in {job.get('elapsed_seconds')} s — {job.get('reason')}")
        if before or after:
            lines.append(f"retrain's own held-out evaluation: intent accuracy {before.get('intent_accuracy')} → "
                         f"{after.get('intent_accuracy')}, out-of-scope {before.get('oos_rate')} → "
                         f"{after.get('oos_rate')}")
    return "\n".join(lines)


# --- main -------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> Dict[str, Any]:
    started = time.monotonic()
    report: Dict[str, Any] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python -m review.experiment " + " ".join(sys.argv[1:]),
        "stages": {},
    }
    state_before = checkout_state()
    data = load_data(ROOT / args.data)
    report["data"] = {area: {part: len(items) for part, items in parts.items()} for area, parts in data.items()}
    work = Path(tempfile.mkdtemp(prefix="review-experiment-"))
    project = work / "project"
    stack = Stack(project, work)

    def stage(name: str, since: float) -> None:
        report["stages"][name] = round(time.monotonic() - since, 1)

    try:
        t = time.monotonic()
        model = copy_project(project)
        report["landed_model"] = model.name
        stage("copy", t)
        t = time.monotonic()
        stack.start()
        stage("stack_start", t)
        assistant = Assistant(stack, project)
        heldout, golden = load_heldout(project), load_golden(project)

        t = time.monotonic()
        report["before"] = measure(assistant, data, heldout, golden, "before")
        stage("before", t)

        t = time.monotonic()
        # whole seconds (truncated): wait past the second of the measurements' last event first
        time.sleep(1.1)
        since = datetime.now(timezone.utc).isoformat(timespec="seconds")
        log("feeding the feed messages as customers")
        report["feed"] = feed(assistant, data)
        stage("feed", t)

        t = time.monotonic()
        feed_keys = {normalise(text) for area in ("nlu", "kb") for text, _ in data[area]["feed"]}
        inbox = wait_for_inbox(assistant, since, feed_keys)
        in_inbox = {normalise(item["text"]) for cluster in inbox["clusters"] for item in cluster["texts"]}
        log(f"inbox: {inbox.get('open')} open misses in {len(inbox['clusters'])} clusters; "
            f"{len(in_inbox & feed_keys)} of {len(feed_keys)} fed messages in it")
        review = annotate(assistant, data, since)
        parses = {item["text"]: item for item in report["before"]["items"]["nlu_feed"]}
        review.update(
            inbox_open=inbox.get("open"), inbox_clusters=len(inbox["clusters"]), inbox_kinds=inbox.get("kinds"),
            feed_in_inbox=len(in_inbox & feed_keys),
            not_in_inbox=[{"area": f["area"], "text": f["text"], "label": f["label"], "reply": f["reply"],
                           "parse": parses.get(f["text"])}
                          for f in report["feed"] if normalise(f["text"]) not in in_inbox],
        )
        report["review"] = review
        accepted = sum(1 for d in review["decisions"] if d["status"] == "accepted")
        log(f"annotated: {accepted} accepted, {len(review['decisions']) - accepted} refused")
        stage("annotate", t)

        t = time.monotonic()
        report["retrain"] = retrain(assistant, timeout=args.retrain_timeout)
        stage("retrain", t)
        log(f"retrain: {report['retrain'].get('state')}: {report['retrain'].get('reason')}")

        t = time.monotonic()
        wait_for_reindex(assistant, data["kb"]["feed"])
        report["after"] = measure(assistant, data, heldout, golden, "after")
        stage("after", t)
    except BaseException as error:
        report["error"] = f"{type(error).__name__}: {error}"
        report["stack_log_tail"] = stack.tail(60)
        raise
    finally:
        stack.stop()
        report["stages"]["total"] = round(time.monotonic() - started, 1)
        report["checkout_untouched"] = checkout_state() == state_before
        if "before" in report:
            report["table"] = table(report["before"], report.get("after"))
        output = ROOT / args.output
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(report, ensure_ascii=False, indent=1, default=str), encoding="utf-8")
        log(f"report written to {output}")
        if args.keep:
            log(f"the copy is kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return report


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the experiment's messages (YAML)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="the JSON report (under this checkout)")
    parser.add_argument("--retrain-timeout", type=float, default=3600.0, help="seconds the retrain may take")
    parser.add_argument("--keep", action="store_true", help="keep the temporary copy (its logs and databases)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    report = run(args)
    print()
    print(report["table"])
    print()
    print(summary(report))
    print(f"\ntook {report['stages']['total'] / 60:.1f} min; data/, models/ and the databases of the checkout "
          f"untouched: {report['checkout_untouched']}")
    state = (report.get("retrain") or {}).get("state")
    return 0 if state in ("loaded", "accepted") else 1


if __name__ == "__main__":
    sys.exit(main())
