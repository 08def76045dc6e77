"""Keeps the stack's services running: starts each, waits until it answers, restarts one that
dies (at once, then after 1, 2, 4 … s while it keeps dying, capped; at once again after it ran a
while), reports every death and recovery, and stops them all (process groups; SIGKILL after a
grace period).

Used by ``engine.stack``; in production a real supervisor (systemd, compose) does this job
instead (docs/deployment.md).
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Set

from engine.settings import PROJECT_ROOT

#: numeric libraries' thread pools: one thread each. The services encode one message at a time,
#: where a second BLAS/OpenMP thread only spins (it took 60 % of a core beside the Rasa server's
#: main thread under load, for no gain in latency). Set them yourself to override.
SINGLE_THREADED_MATH = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
#: a service that ran this long before it died starts again without waiting
STABLE_AFTER_SECONDS = 60.0

def service_env(env: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    merged = dict(os.environ if env is None else env)
    for name, value in SINGLE_THREADED_MATH.items():
        merged.setdefault(name, value)
    return merged


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):  # the group is empty already
        pass


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status < 500
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


@dataclass
class Service:
    name: str
    command: List[str]
    env: Dict[str, str] = field(default_factory=dict)
    #: an HTTP URL that answers (< 500) once the service is up
    health_url: Optional[str] = None
    #: or a readiness check of its own (raises when the service does not come up)
    ready: Optional[Callable[[subprocess.Popen, float], None]] = None
    #: what stops it cleanly (PostgreSQL: SIGINT is its fast shutdown)
    stop_signal: int = signal.SIGTERM
    process: Optional[subprocess.Popen] = None
    started_at: float = 0.0
    restarts: int = 0
    restart_at: Optional[float] = None
    up: bool = False


class Supervisor:
    """Starts services in order, each once the previous is ready; restarts one that dies (at
    once, then with back-off 1, 2, 4 … s up to ``backoff_max``; at once again after it ran
    :data:`STABLE_AFTER_SECONDS`), and reports every death and recovery."""

    def __init__(self, *, backoff_max: float = 30.0, startup_timeout: float = 300.0,
                 report: Callable[[str], None] = lambda line: print(line, flush=True),
                 stop_grace_seconds: float = 20.0) -> None:
        self.services: Dict[str, Service] = {}
        self.backoff_max = backoff_max
        self.startup_timeout = startup_timeout
        #: how long :meth:`stop` waits for a service to exit before it SIGKILLs it
        self.stop_grace_seconds = stop_grace_seconds
        self.report = report
        #: leaders whose groups were SIGKILLed after they exited (once: the pid may be reused later)
        self._cleaned: Set[int] = set()

    def add(self, service: Service) -> Service:
        self.services[service.name] = service
        return service

    def _launch(self, service: Service) -> None:
        service.process = subprocess.Popen(service.command, cwd=PROJECT_ROOT, start_new_session=True,
                                           env=service_env(service.env or None))
        service.started_at = time.monotonic()
        service.up = False

    def wait_ready(self, service: Service, timeout: Optional[float] = None, retries: int = 0) -> None:
        """Until the service answers. One that exits first is started again up to ``retries``
        times (a replica that lost a race with another at start, a database still coming up),
        after its back-off and within the same ``timeout``; else :class:`RuntimeError`."""
        timeout = self.startup_timeout if timeout is None else timeout
        assert service.process is not None
        if service.ready is not None:
            service.ready(service.process, timeout)
        elif service.health_url:
            deadline = time.monotonic() + timeout
            while not _http_ok(service.health_url):
                if service.process.poll() is not None:
                    if retries <= 0:
                        raise RuntimeError(f"the {service.name} exited with code {service.process.returncode}")
                    retries -= 1
                    service.restarts += 1
                    delay = self._backoff(service)
                    self.report(f"✗ The {service.name} stopped while starting (exit code "
                                f"{service.process.returncode}); starting it again in {delay:.0f} s.")
                    self._kill_leftovers(service.process)
                    time.sleep(delay)
                    self._launch(service)
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{service.health_url} did not come up within {timeout:.0f} s")
                time.sleep(0.3)
        service.up = True
        service.restarts = 0

    def start(self, *names: str, wait: bool = True) -> None:
        """Launch ``names`` together, then wait until each is ready."""
        for name in names:
            self._launch(self.services[name])
        if wait:
            for name in names:
                self.wait_ready(self.services[name])

    def _kill_leftovers(self, process: subprocess.Popen) -> None:
        """SIGKILL what is left of an exited leader's process group: the leader waits for its
        own children (nginx, PostgreSQL), so what outlives it would run on unsupervised — nginx's
        workers outlive a killed master and keep its port, and a restarted one could not listen."""
        if process.pid not in self._cleaned:
            self._cleaned.add(process.pid)
            _signal_group(process.pid, signal.SIGKILL)

    def _backoff(self, service: Service) -> float:
        """The first restart is at once; the next ones wait 1, 2, 4 … s, at most ``backoff_max``."""
        if service.restarts <= 1:
            return 0.0
        return min(self.backoff_max, 2.0 ** (service.restarts - 2))

    def check(self) -> None:
        """One round of supervision: notice deaths, restart what is due, report recoveries."""
        now = time.monotonic()
        for service in self.services.values():
            process = service.process
            if process is None:
                continue
            if service.restart_at is not None:
                if now >= service.restart_at:
                    service.restart_at = None
                    self._launch(service)
                continue
            if process.poll() is not None:
                self._kill_leftovers(process)
                if now - service.started_at >= STABLE_AFTER_SECONDS:
                    service.restarts = 0
                service.restarts += 1
                delay = self._backoff(service)
                self.report(f"✗ The {service.name} stopped (exit code {process.returncode}); "
                            f"restarting it{f' in {delay:.0f} s' if delay else ''} (restart {service.restarts}).")
                service.restart_at = now + delay
                service.up = False
            elif not service.up and service.restarts:
                if service.health_url is None and service.ready is None:
                    service.up = True
                elif service.health_url and _http_ok(service.health_url):
                    service.up = True
                elif service.ready is not None:
                    try:
                        service.ready(process, 0.5)
                        service.up = True
                    except Exception:
                        pass
                if service.up:
                    self.report(f"✓ The {service.name} is running again.")

    def run(self, poll_seconds: float = 0.5) -> int:
        """Supervise until interrupted (KeyboardInterrupt from Ctrl-C or SIGTERM)."""
        while True:
            self.check()
            time.sleep(poll_seconds)

    def stop(self) -> None:
        for service in reversed(list(self.services.values())):
            process = service.process
            if process is not None and process.poll() is None:
                _signal_group(process.pid, service.stop_signal)
        deadline = time.monotonic() + self.stop_grace_seconds
        for service in reversed(list(self.services.values())):
            process = service.process
            if process is None:
                continue
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            self._kill_leftovers(process)  # and the leader itself, once the grace period is over
            process.wait()
