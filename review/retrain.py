"""Retraining from the console: a background ``rasa train`` whose model is loaded only if it is not
worse than the one customers talk to now.

One job at a time (a thread lock, and ``flock`` on ``<state_dir>/retrain.lock`` for other
processes — the console and ``python -m review retrain`` share it). A job:

``training``    ``python -m rasa train --out <models_dir>/candidates --fixed-model-name review-<time>``
                in the project root (the same training as ``scripts/run.sh``: data/ + scenarios/);
                ``progress`` is the fraction of the policy's epochs when Rasa prints them, ``step``
                the component being trained, ``elapsed_seconds`` always;
``evaluating``  the current model (the one ``GET <rasa_url>/status`` reports, else the newest
                ``<models_dir>/*.tar.gz``) and the candidate on the held-out sets
                (``review.evaluate.heldout_accuracy``, each in a child process; a model's result
                is cached in ``<state_dir>/evaluations.json`` while it and the held-out sets stay);
``loading``     the candidate is not worse — intent accuracy ≥ before − ``tolerance`` (0) and the
                out-of-scope rate ≥ before − ``oos_tolerance`` (0.02) — so it moves into
                ``models_dir`` (where a restarted ``rasa run --model models_dir`` finds it as the
                newest) and ``PUT <url>/model {"model_file": <absolute path>}`` loads it into every
                running server, checked with ``GET <url>/status``;

and ends as ``loaded`` (on every server), ``accepted`` (not worse, but not loaded: ``load=False``
or no server configured), ``rejected`` (worse: the candidate goes to ``<models_dir>/rejected/``,
the newest ``keep_rejected`` kept, and nothing is loaded), or ``failed`` (``reason`` says where,
``log_tail`` shows Rasa's last lines; a job a restart interrupted is reported failed too).

The job's status is kept in ``state_file`` (JSON, written atomically at every change), so the console
shows the last result after a restart; the full log of a job is ``<state_dir>/retrain-<job>.log``
(training logs hold no customer data).

Settings (``RetrainSettings.from_env``)::

    REVIEW_RASA_URLS                  the Rasa servers to load a new model into (http://127.0.0.1:5005; comma list)
    RASA_MODELS_DIR                   where the servers' models are (<root>/models)
    REVIEW_STATE_DIR                  the job's state and logs (<root>/.review)
    REVIEW_PROJECT_ROOT               the project trained (this checkout)
    REVIEW_RETRAIN_TOLERANCE          how much intent accuracy a new model may lose (0)
    REVIEW_RETRAIN_OOS_TOLERANCE      how much out-of-scope detection it may lose (0.02)
    REVIEW_RETRAIN_TIMEOUT_SECONDS    a training running longer is stopped (7200)
    REVIEW_RASA_LOAD_TIMEOUT_SECONDS  how long a server may take to load a model (300)
    REVIEW_RASA_TOKEN                 Rasa's --auth-token, when the servers have one
"""
from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import re
import select
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Deque, Dict, List, Mapping, Optional, Sequence, Tuple

from engine.env import env_float, env_raw
from engine.settings import PROJECT_ROOT

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: one process only
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

#: where this package's code lives: child processes (``python -m review evaluate``) import it from here
CODE_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RASA_URLS: Tuple[str, ...] = ("http://127.0.0.1:5005",)
RUNNING = ("training", "evaluating", "loading")
FINISHED = ("loaded", "accepted", "rejected", "failed")
LOG_TAIL_LINES = 40
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_EPOCHS = re.compile(r"Epochs:.*?(\d+)/(\d+)")
_COMPONENT = re.compile(r"(?:Starting to train|Restored) component '([^']+)'")


class RetrainError(RuntimeError):
    """A retrain could not be started (``code`` says why)."""

    code = "retrain_error"


class RetrainBusy(RetrainError):
    """A retrain is already running (in this process or another)."""

    code = "retrain_running"


@dataclass(frozen=True)
class RetrainSettings:
    project_root: Path = PROJECT_ROOT
    models_dir: Path = field(default_factory=lambda: PROJECT_ROOT / "models")
    rasa_urls: Tuple[str, ...] = DEFAULT_RASA_URLS
    state_dir: Path = field(default_factory=lambda: PROJECT_ROOT / ".review")
    tolerance: float = 0.0
    oos_tolerance: float = 0.02
    train_timeout: float = 7200.0
    load_timeout: float = 300.0
    rasa_token: Optional[str] = None

    def __post_init__(self) -> None:
        for name in ("tolerance", "oos_tolerance"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"REVIEW_RETRAIN_{name.upper()} must be within 0..1")
        if self.train_timeout <= 0 or self.load_timeout <= 0:
            raise ValueError("REVIEW_RETRAIN_TIMEOUT_SECONDS and REVIEW_RASA_LOAD_TIMEOUT_SECONDS must be > 0")
        for url in self.rasa_urls:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"REVIEW_RASA_URLS: {url!r} is not an http(s) URL")

    @property
    def state_file(self) -> Path:
        return self.state_dir / "retrain.json"

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None) -> "RetrainSettings":
        env = os.environ if environ is None else environ
        root = Path(env_raw(env, "REVIEW_PROJECT_ROOT") or PROJECT_ROOT).expanduser().resolve()

        def under_root(name: str, default: Path) -> Path:
            raw = env_raw(env, name)
            path = Path(raw).expanduser() if raw else default
            return (path if path.is_absolute() else root / path).resolve()

        urls = env_raw(env, "REVIEW_RASA_URLS")
        return cls(
            project_root=root,
            models_dir=under_root("RASA_MODELS_DIR", root / "models"),
            rasa_urls=tuple(u.strip().rstrip("/") for u in urls.split(",") if u.strip()) if urls else DEFAULT_RASA_URLS,
            state_dir=under_root("REVIEW_STATE_DIR", root / ".review"),
            tolerance=env_float(env, "REVIEW_RETRAIN_TOLERANCE", cls.tolerance),
            oos_tolerance=env_float(env, "REVIEW_RETRAIN_OOS_TOLERANCE", cls.oos_tolerance),
            train_timeout=env_float(env, "REVIEW_RETRAIN_TIMEOUT_SECONDS", cls.train_timeout),
            load_timeout=env_float(env, "REVIEW_RASA_LOAD_TIMEOUT_SECONDS", cls.load_timeout),
            rasa_token=env_raw(env, "REVIEW_RASA_TOKEN"),
        )


def judge(before: Optional[Mapping[str, Any]], after: Mapping[str, Any], tolerance: float = 0.0,
          oos_tolerance: float = 0.02) -> Tuple[bool, str]:
    """(is ``after`` not worse than ``before``, why) on held-out intent accuracy and out-of-scope rate."""
    if before is None:
        return True, "no current model to compare with"

    def pct(value: float) -> str:
        return f"{value * 100:.1f} %"

    problems, notes = [], []
    b, a = before.get("intent_accuracy"), after.get("intent_accuracy")
    if a is not None and b is not None:
        if a < b - tolerance - 1e-9:
            problems.append(f"held-out intent accuracy fell from {pct(b)} to {pct(a)}")
        else:
            notes.append(f"held-out intent accuracy {pct(b)} → {pct(a)}")
    b, a = before.get("oos_rate"), after.get("oos_rate")
    if a is not None and b is not None:
        if a < b - oos_tolerance - 1e-9:
            problems.append(f"out-of-scope detection fell from {pct(b)} to {pct(a)} (more than {pct(oos_tolerance)})")
        else:
            notes.append(f"out-of-scope detection {pct(b)} → {pct(a)}")
    if problems:
        return False, "; ".join(problems)
    return True, "; ".join(notes) or "nothing to compare on (no held-out sets)"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Retrainer:
    """Background retrains of the project's model (see the module doc)."""

    def __init__(
        self,
        root: Path = PROJECT_ROOT,
        models_dir: Optional[Path] = None,
        rasa_urls: Sequence[str] = DEFAULT_RASA_URLS,
        state_file: Optional[Path] = None,
        *,
        tolerance: float = 0.0,
        oos_tolerance: float = 0.02,
        train_timeout: float = 7200.0,
        load_timeout: float = 300.0,
        rasa_token: Optional[str] = None,
        keep_rejected: int = 3,
        python: Optional[str] = None,
    ) -> None:
        self.root = Path(root).resolve()
        self.models_dir = Path(models_dir).resolve() if models_dir else self.root / "models"
        self.rasa_urls = [str(url).rstrip("/") for url in rasa_urls]
        self.state_file = Path(state_file).resolve() if state_file else self.root / ".review" / "retrain.json"
        self.state_dir = self.state_file.parent
        self.tolerance = float(tolerance)
        self.oos_tolerance = float(oos_tolerance)
        self.train_timeout = float(train_timeout)
        self.load_timeout = float(load_timeout)
        self.rasa_token = rasa_token
        self.keep_rejected = int(keep_rejected)
        self.python = python or sys.executable
        self._lock = threading.Lock()
        self._job: Optional[Dict[str, Any]] = None  # the job this process runs, while it runs
        self._thread: Optional[threading.Thread] = None
        self._lock_fd: Optional[int] = None
        self._log: Deque[str] = collections.deque(maxlen=400)
        self._saved_at = 0.0

    @classmethod
    def from_settings(cls, settings: RetrainSettings) -> "Retrainer":
        return cls(settings.project_root, settings.models_dir, settings.rasa_urls, settings.state_file,
                   tolerance=settings.tolerance, oos_tolerance=settings.oos_tolerance,
                   train_timeout=settings.train_timeout, load_timeout=settings.load_timeout,
                   rasa_token=settings.rasa_token)

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None) -> "Retrainer":
        return cls.from_settings(RetrainSettings.from_env(environ))

    @property
    def candidates_dir(self) -> Path:
        return self.models_dir / "candidates"

    @property
    def rejected_dir(self) -> Path:
        return self.models_dir / "rejected"

    # --- public API -------------------------------------------------------------------------------

    def start(self, requested_by: str = "trainer", load: bool = True) -> Dict[str, Any]:
        """Starts a job in a background thread; its first status. ``RetrainBusy`` if one runs."""
        job = self._begin(requested_by, load)
        thread = threading.Thread(target=self._run_job, args=(job,), name=f"retrain-{job['job_id']}", daemon=True)
        with self._lock:
            self._thread = thread
        thread.start()
        return self.status()

    def run(self, requested_by: str = "cli", load: bool = True,
            on_change: Optional[Callable[[Dict[str, Any]], None]] = None) -> Dict[str, Any]:
        """Runs a job in this thread (the command line); its final status."""
        self._on_change = on_change
        try:
            self._run_job(self._begin(requested_by, load))
        finally:
            self._on_change = None
        return self.status()

    def wait(self, timeout: Optional[float] = None) -> Dict[str, Any]:
        """Waits for this process's running job (if any) to finish; the status."""
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return self.status()

    def running(self) -> bool:
        return self.status().get("state") in RUNNING

    def status(self) -> Dict[str, Any]:
        """The running job's progress, or the last job's result (``{"state": "idle"}`` before any)."""
        with self._lock:
            if self._job is not None:
                return self._view(self._job)
        saved = self._read_state()
        if saved is None:
            return {"state": "idle"}
        if saved.get("state") in RUNNING and not self._held_elsewhere():
            saved.update(state="failed", finished_at=saved.get("finished_at") or _now(),
                         reason=f"interrupted while {saved.get('state')} (the process running it stopped)")
        return saved

    def current_model(self) -> Optional[Path]:
        """The model the servers run: what the first answering ``/status`` names (when it is in
        ``models_dir``), else the newest ``models_dir/*.tar.gz`` (what ``rasa run --model`` loads)."""
        for url in self.rasa_urls:
            name = self._loaded_name(url, timeout=5.0)
            if name:
                path = self.models_dir / Path(name).name
                if path.is_file():
                    return path
                break
        return _newest(self.models_dir)

    # --- the job ----------------------------------------------------------------------------------

    _on_change: Optional[Callable[[Dict[str, Any]], None]] = None

    def _begin(self, requested_by: str, load: bool) -> Dict[str, Any]:
        with self._lock:
            if self._job is not None:
                raise RetrainBusy(f"a retrain is already running (started by {self._job.get('requested_by')} "
                                  f"at {self._job.get('started_at')})")
            self.state_dir.mkdir(parents=True, exist_ok=True)
            fd = self._try_lock()
            if fd is None:
                saved = self._read_state() or {}
                raise RetrainBusy(f"a retrain is already running in another process (started by "
                                  f"{saved.get('requested_by', '?')} at {saved.get('started_at', '?')})")
            self._lock_fd = fd
            job_id = datetime.now().strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:4]
            self._log.clear()
            self._job = {
                "job_id": job_id,
                "state": "training",
                "stage": "training",
                "progress": None,
                "step": None,
                "elapsed_seconds": 0.0,
                "requested_by": str(requested_by or "trainer"),
                "load": bool(load),
                "started_at": _now(),
                "finished_at": None,
                "current_model": None,
                "candidate": None,
                "model": None,
                "before": None,
                "after": None,
                "loaded_on": [],
                "reason": None,
                "log_file": str(self.state_dir / f"retrain-{job_id}.log"),
                "_started": time.monotonic(),
            }
            job = self._job
        self._save(force=True)
        self._prune_logs()
        logger.info("review: %s started retrain %s (load=%s)", job["requested_by"], job["job_id"], load)
        return job

    def _run_job(self, job: Dict[str, Any]) -> None:
        try:
            self._job_steps(job)
        except Exception as error:  # a bug or an I/O error: reported, never left "running"
            logger.exception("review: retrain %s failed", job["job_id"])
            self._finish("failed", f"{type(error).__name__}: {error}")
        finally:
            with self._lock:
                self._job = None
                if self._lock_fd is not None:
                    os.close(self._lock_fd)  # releases the flock
                    self._lock_fd = None

    def _job_steps(self, job: Dict[str, Any]) -> None:
        name = f"review-{job['job_id']}"
        self.candidates_dir.mkdir(parents=True, exist_ok=True)
        command = [self.python, "-m", "rasa", "train", "--out", str(self.candidates_dir), "--fixed-model-name", name]
        self._append_log(f"$ {' '.join(command)}  (in {self.root})")
        code = self._stream(command, timeout=self.train_timeout, on_line=self._training_line)
        if code is None:
            return self._finish("failed", f"rasa train took longer than {self.train_timeout:.0f} s and was stopped")
        candidate = self.candidates_dir / f"{name}.tar.gz"
        if code != 0 or not candidate.is_file():
            return self._finish("failed", f"rasa train exited with code {code}" if code else "rasa train wrote no model")
        self._update(candidate=str(candidate), progress=1.0, step=None)

        self._update(state="evaluating", stage="evaluating", progress=None)
        current = self.current_model()
        self._update(current_model=str(current) if current else None)
        try:
            before = self._evaluate(current) if current else None
        except RuntimeError as error:
            self._move(candidate, self.rejected_dir)
            return self._finish("failed", f"the current model could not be evaluated: {error}")
        self._update(before=before)
        try:
            after = self._evaluate(candidate)
        except RuntimeError as error:
            moved = self._move(candidate, self.rejected_dir)
            self._update(candidate=str(moved))
            return self._finish("failed", f"the new model could not be evaluated: {error}")
        self._update(after=after)

        ok, why = judge(before, after, self.tolerance, self.oos_tolerance)
        if not ok:
            moved = self._move(candidate, self.rejected_dir)
            self._prune_rejected()
            self._update(candidate=str(moved))
            return self._finish("rejected", f"the new model is worse: {why}; the current model stays")
        model = self._move(candidate, self.models_dir)
        self._update(model=str(model), candidate=None)
        if not job["load"]:
            return self._finish("accepted", f"not worse ({why}); not loaded as asked — a server restart loads it")
        if not self.rasa_urls:
            return self._finish("accepted", f"not worse ({why}); no Rasa server configured to load it into")

        self._update(state="loading", stage="loading")
        loaded, errors = [], []
        for url in self.rasa_urls:
            error = self._load_into(url, model)
            if error is None:
                loaded.append(url)
                self._update(loaded_on=list(loaded))
            else:
                errors.append(f"{url}: {error}")
        if errors:
            return self._finish("failed", f"not worse ({why}), but not loaded on {'; '.join(errors)}"
                                + (f" (loaded on {', '.join(loaded)})" if loaded else ""))
        return self._finish("loaded", f"not worse ({why}); loaded on {len(loaded)} server(s)")

    # --- training and evaluation processes -------------------------------------------------------

    def _child_env(self) -> Dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(CODE_ROOT), *filter(None, [env.get("PYTHONPATH")])])
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        env.setdefault("RASA_TELEMETRY_ENABLED", "false")
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _stream(self, command: List[str], timeout: float, on_line: Optional[Callable[[str], None]] = None
                ) -> Optional[int]:
        """Runs ``command`` in the project root, feeding its output (stdout + stderr, split on line
        ends and tqdm's carriage returns) to the log; its exit code, or None after ``timeout``."""
        started = time.monotonic()
        process = subprocess.Popen(command, cwd=self.root, env=self._child_env(), stdin=subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert process.stdout is not None
        buffer = b""
        try:
            while True:
                ready, _, _ = select.select([process.stdout], [], [], 1.0)
                if ready:
                    chunk = os.read(process.stdout.fileno(), 65536)
                    if not chunk:
                        break
                    buffer += chunk
                    *lines, buffer = re.split(rb"[\r\n]", buffer)
                    for raw in lines:
                        line = _ANSI.sub("", raw.decode("utf-8", "replace")).rstrip()
                        if line:
                            self._append_log(line)
                            if on_line:
                                on_line(line)
                self._update(elapsed_seconds=round(time.monotonic() - self._job_started(), 1), _throttle=True)
                if time.monotonic() - started > timeout:
                    self._append_log(f"(stopped after {timeout:.0f} s)")
                    process.terminate()
                    try:
                        process.wait(15)
                    except subprocess.TimeoutExpired:
                        process.kill()
                        process.wait()
                    return None
            if buffer.strip():
                self._append_log(_ANSI.sub("", buffer.decode("utf-8", "replace")).rstrip())
            return process.wait()
        finally:
            if process.poll() is None:  # an exception on our side: do not leave Rasa running
                process.kill()
                process.wait()
            process.stdout.close()

    def _training_line(self, line: str) -> None:
        epochs = _EPOCHS.search(line)
        if epochs and int(epochs.group(2)) > 0:
            self._update(progress=round(int(epochs.group(1)) / int(epochs.group(2)), 3), _throttle=True)
        component = _COMPONENT.search(line)
        if component:
            self._update(step=component.group(1).rsplit(".", 1)[-1], _throttle=True)

    def _evaluate(self, model: Path) -> Dict[str, Any]:
        """``heldout_accuracy`` of ``model``, in a child process (cached per model and held-out sets)."""
        key = _evaluation_key(model, self.root)
        cache = self._read_json(self.state_dir / "evaluations.json") or {}
        if key in cache:
            self._append_log(f"(held-out result of {model.name} from the cache)")
            return dict(cache[key], model=str(model))
        descriptor, output = tempfile.mkstemp(dir=self.state_dir, prefix=".evaluation.", suffix=".json")
        os.close(descriptor)
        try:
            command = [self.python, "-m", "review", "evaluate", str(model), "--root", str(self.root),
                       "--output", output]
            self._append_log(f"$ {' '.join(command)}")
            code = self._stream(command, timeout=self.train_timeout)
            if code != 0:
                raise RuntimeError(f"evaluation of {model.name} " + ("timed out" if code is None else f"exited with code {code}"))
            result = json.loads(Path(output).read_text(encoding="utf-8"))
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(output)
        cache = self._read_json(self.state_dir / "evaluations.json") or {}
        cache[key] = result
        self._write_json(self.state_dir / "evaluations.json", dict(list(cache.items())[-20:]))
        return result

    # --- loading into the servers ----------------------------------------------------------------

    def _params(self) -> Dict[str, str]:
        return {"token": self.rasa_token} if self.rasa_token else {}

    def _loaded_name(self, url: str, timeout: float) -> Optional[str]:
        import httpx

        try:
            response = httpx.get(f"{url}/status", params=self._params(), timeout=timeout)
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        try:
            return str(response.json().get("model_file") or "") or None
        except ValueError:
            return None

    def _load_into(self, url: str, model: Path) -> Optional[str]:
        """None when ``url`` now runs ``model``, else what went wrong."""
        import httpx

        self._append_log(f"PUT {url}/model {model}")
        try:
            response = httpx.put(f"{url}/model", params=self._params(), json={"model_file": str(model)},
                                 timeout=self.load_timeout)
        except httpx.HTTPError as error:
            return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        if response.status_code not in (200, 204):
            return f"HTTP {response.status_code} {response.text[:200]}"
        loaded = self._loaded_name(url, timeout=30.0)
        if loaded is None or Path(loaded).name != model.name:
            return f"the server reports {loaded or 'no model'} after loading {model.name}"
        self._append_log(f"{url} runs {model.name}")
        return None

    # --- files ------------------------------------------------------------------------------------

    def _move(self, model: Path, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / model.name
        os.replace(model, target)  # one file system: models_dir holds candidates/ and rejected/
        return target

    def _prune_rejected(self) -> None:
        rejected = sorted(self.rejected_dir.glob("*.tar.gz"), key=lambda path: path.stat().st_mtime, reverse=True)
        for path in rejected[max(self.keep_rejected, 1):]:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def _prune_logs(self, keep: int = 10) -> None:
        logs = sorted(self.state_dir.glob("retrain-*.log"), key=lambda path: path.stat().st_mtime, reverse=True)
        for path in logs[keep:]:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    # --- state ------------------------------------------------------------------------------------

    def _job_started(self) -> float:
        with self._lock:
            return self._job["_started"] if self._job else time.monotonic()

    def _append_log(self, line: str) -> None:
        with self._lock:
            self._log.append(line)
            path = self._job.get("log_file") if self._job else None
        if path:
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(line + "\n")

    def _update(self, _throttle: bool = False, **changes: Any) -> None:
        with self._lock:
            if self._job is None:
                return
            self._job.update(changes)
        self._save(force=not _throttle)

    def _finish(self, state: str, reason: str) -> None:
        with self._lock:
            if self._job is None:
                return
            self._job.update(state=state, reason=reason, finished_at=_now(),
                             elapsed_seconds=round(time.monotonic() - self._job["_started"], 1))
            job = dict(self._job)
        self._save(force=True)
        logger.info("review: retrain %s %s: %s", job["job_id"], state, reason)

    def _view(self, job: Dict[str, Any]) -> Dict[str, Any]:
        view = {key: value for key, value in job.items() if not key.startswith("_")}
        if view["state"] in RUNNING:
            view["elapsed_seconds"] = round(time.monotonic() - job["_started"], 1)
        view["log_tail"] = list(self._log)[-LOG_TAIL_LINES:]
        return json.loads(json.dumps(view, default=str))  # a copy, and JSON-safe

    def _save(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._saved_at < 2.0:
            return
        self._saved_at = now
        with self._lock:
            if self._job is None:
                return
            view = self._view(self._job)
        self._write_json(self.state_file, view)
        if self._on_change is not None:
            self._on_change(view)

    def _read_state(self) -> Optional[Dict[str, Any]]:
        return self._read_json(self.state_file)

    @staticmethod
    def _read_json(path: Path) -> Optional[Dict[str, Any]]:
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return None

    @staticmethod
    def _write_json(path: Path, data: Any) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                json.dump(data, handle, ensure_ascii=False, indent=1, default=str)
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise

    def _lock_path(self) -> Path:
        return self.state_dir / "retrain.lock"

    def _try_lock(self) -> Optional[int]:
        """An open descriptor holding the cross-process job lock, or None when another holds it."""
        fd = os.open(self._lock_path(), os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is None:  # pragma: no cover
            return fd
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    def _held_elsewhere(self) -> bool:
        if not self._lock_path().exists():
            return False
        fd = self._try_lock()
        if fd is None:
            return True
        os.close(fd)
        return False


def _newest(folder: Path) -> Optional[Path]:
    """The model ``rasa run --model folder`` would load (Rasa picks the newest by ctime)."""
    models = [path for path in folder.glob("*.tar.gz") if path.is_file()] if folder.is_dir() else []
    return max(models, key=lambda path: path.stat().st_ctime) if models else None


def _evaluation_key(model: Path, root: Path) -> str:
    """A model file (by name, size and time: the same after a move) on the current held-out sets."""
    from review.training import HELDOUT_NLU, HELDOUT_OUT_OF_SCOPE

    stat = model.stat()
    sets = []
    for relative in (HELDOUT_NLU, HELDOUT_OUT_OF_SCOPE):
        with contextlib.suppress(FileNotFoundError):
            held = (root / relative).stat()
            sets.append(f"{held.st_size}:{held.st_mtime_ns}")
    return f"{model.name}|{stat.st_size}|{stat.st_mtime_ns}|{'|'.join(sets)}"


__all__ = ["Retrainer", "RetrainSettings", "RetrainError", "RetrainBusy", "judge", "RUNNING", "FINISHED"]
