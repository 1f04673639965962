"""`llm-router serve`: check the config, bind the socket, and run uvicorn on it: in this process, or
in N worker processes that share the socket under a small supervisor.

Signals: SIGHUP reloads the config (each worker checks it first and keeps the old one when it is
broken); SIGTERM shuts down gracefully: stop accepting, let requests and streams in flight finish
within `graceful_timeout_s`, cancel what is left, exit 0. A worker that dies is started again."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from types import FrameType

import uvicorn

from ..errors import ConfigurationError
from .live import LiveGateway
from .runtime import Runtime, build_runtime

log = logging.getLogger("llm_router.gateway")

BACKLOG = 2048
RESPAWN_DELAY_S = 1.0  # before a dead worker is started again
POLL_S = 0.1  # how often the supervisor looks at its workers


@dataclass(frozen=True)
class ServeOptions:
    dirs: list[str] = field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    graceful_timeout_s: float = 30.0
    log_level: str = "info"
    access_log: bool = True

    def worker_argv(self, fd: int) -> list[str]:
        argv = [sys.executable, "-m", "llm_router.gateway", "--fd", str(fd), "--graceful-timeout",
                str(self.graceful_timeout_s), "--log-level", self.log_level]
        return argv + ([] if self.access_log else ["--no-access-log"]) + self.dirs


def serve(options: ServeOptions) -> int:
    """Run the gateway until SIGTERM or SIGINT; 1 when the config is broken or the address is taken."""
    configure_logging(options.log_level, options.access_log)
    env = dict(os.environ)
    runtime = _load(options, env)
    if runtime is None:
        return 1
    try:
        sock = bind(options.host, options.port)
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", options.host, options.port, exc)
        return 1
    host, port = sock.getsockname()[:2]
    log.info("llm-router gateway listening on http://%s:%d (%d worker%s, %d models, %d keys)", host, port, options.workers,
             "" if options.workers == 1 else "s", len(runtime.router.models), len(runtime.keys.keys))
    if options.workers == 1:
        return run(sock, options, env, runtime)
    return Supervisor(sock, options).run()


def serve_fd(fd: int, options: ServeOptions) -> int:
    """A worker: serve on the listening socket its supervisor passed as `fd`."""
    configure_logging(options.log_level, options.access_log)
    env = dict(os.environ)
    runtime = _load(options, env)
    if runtime is None:
        return 1
    return run(socket.socket(fileno=fd), options, env, runtime)


def _load(options: ServeOptions, env: dict[str, str]) -> Runtime | None:
    try:
        return build_runtime(options.dirs, env)
    except ConfigurationError as exc:
        log.error("cannot start: %s", exc)
        return None


def bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(BACKLOG)
    sock.set_inheritable(True)
    return sock


def run(sock: socket.socket, options: ServeOptions, env: dict[str, str], runtime: Runtime) -> int:
    app = LiveGateway(options.dirs, env, runtime)
    config = uvicorn.Config(app, lifespan="on", log_config=None, access_log=False, server_header=False,
                            timeout_graceful_shutdown=options.graceful_timeout_s)  # type: ignore[arg-type]  # a float works
    # uvicorn re-raises the signal that stopped it once it is done: the process then exits with status 0
    signal.signal(signal.SIGTERM, _exit_cleanly)
    signal.signal(signal.SIGINT, _exit_cleanly)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def configure_logging(level: str, access_log: bool) -> None:
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s")
    # the HTTP client's own request lines: noise per call, and a URL may carry a provider's key in its query
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    if not access_log:
        logging.getLogger("llm_router.gateway.access").setLevel(logging.WARNING)


class Supervisor:
    """N worker processes on one listening socket: forwards SIGHUP, turns SIGTERM/SIGINT into a
    graceful stop of every worker, and starts a new worker when one dies."""

    def __init__(self, sock: socket.socket, options: ServeOptions) -> None:
        self.sock = sock
        self.options = options
        self.workers: list[subprocess.Popen[bytes] | None] = []
        self.respawn_at: list[float] = []
        self.signals: list[int] = []

    def run(self) -> int:
        for watched in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            signal.signal(watched, lambda signum, frame: self.signals.append(signum))
        self.workers = [self._spawn() for _ in range(self.options.workers)]
        self.respawn_at = [0.0] * len(self.workers)
        while True:
            pending, self.signals = self.signals, []
            for sig in pending:
                if sig != signal.SIGHUP:
                    return self._stop()
                log.info("SIGHUP: asking %d workers to reload", len(self.workers))
                self._signal_all(signal.SIGHUP)
            self._replace_dead()
            time.sleep(POLL_S)

    def _spawn(self) -> subprocess.Popen[bytes]:
        fd = self.sock.fileno()
        return subprocess.Popen(self.options.worker_argv(fd), pass_fds=(fd,))

    def _replace_dead(self) -> None:
        now = time.monotonic()
        for i, worker in enumerate(self.workers):
            if worker is not None and worker.poll() is not None:
                log.warning("worker %d exited with status %s; starting another in %gs", worker.pid, worker.returncode,
                            RESPAWN_DELAY_S)
                self.workers[i], self.respawn_at[i] = None, now + RESPAWN_DELAY_S
            elif worker is None and now >= self.respawn_at[i]:
                self.workers[i] = self._spawn()

    def _signal_all(self, sig: int) -> None:
        for worker in self.workers:
            if worker is not None and worker.poll() is None:
                worker.send_signal(sig)

    def _stop(self) -> int:
        log.info("stopping %d workers (in-flight requests get %gs)", len(self.workers), self.options.graceful_timeout_s)
        self.sock.close()  # new connections are refused at once, not queued for workers that are leaving
        self._signal_all(signal.SIGTERM)
        deadline = time.monotonic() + self.options.graceful_timeout_s + 5
        for worker in self.workers:
            if worker is None:
                continue
            try:
                worker.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                log.error("worker %d did not stop in time; killing it", worker.pid)
                worker.kill()
                worker.wait()
        return 0
