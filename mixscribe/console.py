"""What a command prints: the tool's own lines and one progress bar per stage. The libraries' logs
(Ray, Ray Data, Ray Train, MLflow, Python warnings) go to a log file under the work folder, named when
the command ends; `--verbose` shows them live as well. Ray's worker processes write to Ray's session
folder, which is named at the end too.

The log file and its folder are created at the first line logged: a command refused before any work
leaves nothing behind.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
from pathlib import Path

# Loggers that install their own console handlers (Ray on import, MLflow on first use): their handlers
# are removed so that their lines reach the log file through the root logger instead.
LIBRARY_LOGGERS = ("ray", "ray.data", "ray.train", "ray.tune", "ray.air", "ray.serve", "mlflow", "alembic",
                   "py.warnings", "urllib3", "filelock", "fsspec", "matplotlib", "numba")  # fmt: skip
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
RAY_DATA_LOGGING = Path(__file__).with_name("ray_data_logging.yaml")


class _LazyFileHandler(logging.FileHandler):
    """A FileHandler that creates its folder and file only when the first record arrives."""

    def __init__(self, path: Path):
        self.created = False
        super().__init__(path, delay=True, encoding="utf-8")

    def emit(self, record: logging.LogRecord) -> None:
        if not self.created:
            Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
            self.created = True
        super().emit(record)


# Lines Ray prints itself into the driver's sys.stdout/sys.stderr: "(raylet) WARNING: ...", worker output
# "(MapWorker pid=123, ip=...) ...", with or without colour codes.
_RAY_PRINT = re.compile(r"^(\x1b\[[0-9;]*m)?\((raylet|autoscaler|gcs_server|[^()]*\bpid=\d+[^()]*)\)")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class _RayPrintFilter:
    """A text stream in front of the console that sends Ray's own printed lines to the log and passes
    everything else through (partial lines such as progress bars on flush, as they come)."""

    def __init__(self, stream, logger: logging.Logger):
        self.stream, self.logger, self.pending = stream, logger, ""

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            self._emit(line, newline=True)
        return len(text)

    def _emit(self, line: str, newline: bool) -> None:
        if _RAY_PRINT.match(line):
            self.logger.info(_ANSI.sub("", line))
        else:
            self.stream.write(line + ("\n" if newline else ""))

    def flush(self) -> None:
        if self.pending and not _RAY_PRINT.match(self.pending):
            self.stream.write(self.pending)
            self.pending = ""
        self.stream.flush()

    def __getattr__(self, name: str):  # isatty, fileno, encoding...: the stream's own
        return getattr(self.stream, name)


class Console:
    """The log routing of one command; `close()` returns the line that names where the logs went."""

    def __init__(self, log_dir: Path | None, command: str, verbose: bool = False):
        self.handler: _LazyFileHandler | None = None
        root = logging.getLogger()
        root.setLevel(logging.INFO)
        if log_dir is not None:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            self.handler = _LazyFileHandler(Path(log_dir).absolute() / f"{command}-{stamp}-{os.getpid()}.log")
            self.handler.setFormatter(logging.Formatter(_FORMAT))
            self.handler.setLevel(logging.INFO)
            root.addHandler(self.handler)
            os.environ.setdefault("RAY_DATA_LOGGING_CONFIG", str(RAY_DATA_LOGGING))  # read when Ray Data loads
            os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")  # MLflow's lines propagate to the file
        self._terminal_fd: int | None = None
        self._stdout = sys.stdout
        if log_dir is not None and not verbose:
            self._divert_native_stderr()
            printed = logging.getLogger("ray.printed")
            sys.stdout, sys.stderr = _RayPrintFilter(sys.stdout, printed), _RayPrintFilter(sys.stderr, printed)
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(logging.Formatter(_FORMAT))
        # Without a file, warnings still reach the user; with one, only --verbose shows library lines.
        console.setLevel(logging.INFO if verbose else logging.WARNING if log_dir is None else logging.CRITICAL + 1)
        root.addHandler(console)
        logging.captureWarnings(True)
        route_library_logs()

    @property
    def log_path(self) -> Path | None:
        return Path(self.handler.baseFilename) if self.handler and self.handler.created else None

    def _divert_native_stderr(self) -> None:
        """Ray's C++ core worker in this process writes its log lines straight to file descriptor 2: point
        fd 2 at a pipe whose lines go to the log file, and keep Python's sys.stderr (progress bars, the
        tool's own lines) on the terminal."""
        try:
            sys.stderr.flush()
            self._terminal_fd = os.dup(2)
            read_end, write_end = os.pipe()
            os.dup2(write_end, 2)
            os.close(write_end)
        except (OSError, ValueError, AttributeError):  # no real fd 2 (an embedding host): leave it
            self._terminal_fd = None
            return
        sys.stderr = open(self._terminal_fd, "w", buffering=1, encoding="utf-8", errors="backslashreplace",
                          closefd=False)  # fmt: skip
        native = logging.getLogger("ray.native")

        def pump() -> None:
            with open(read_end, "rb", buffering=0) as pipe:
                for line in iter(pipe.readline, b""):
                    native.info(line.decode("utf-8", "replace").rstrip())

        threading.Thread(target=pump, name="native-stderr", daemon=True).start()

    def close(self) -> str | None:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        if isinstance(sys.stdout, _RayPrintFilter):
            sys.stdout = self._stdout
        if self._terminal_fd is not None:
            os.dup2(self._terminal_fd, 2)  # anything written while the process exits reaches the terminal
        if self.handler is not None:
            self.handler.flush()
        where = []
        if self.log_path:
            where.append(f"logs: {self.log_path}")
        from mixscribe.raycluster import local_session_logs

        ray_logs = local_session_logs()
        if ray_logs:
            where.append(f"Ray's worker logs: {ray_logs}")
        return "; ".join(where) or None


def bar_interval() -> float:
    """Seconds between progress-bar refreshes: a terminal gets a lively bar, a log file a line every 15 s."""
    return 1.0 if sys.stderr.isatty() else 15.0


def route_library_logs() -> None:
    """Send the libraries' loggers to the root logger's handlers (the log file), dropping the console
    handlers they installed themselves. Run again after Ray or MLflow is imported or started."""
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        for h in list(logger.handlers):
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
                logger.removeHandler(h)
        logger.propagate = True
