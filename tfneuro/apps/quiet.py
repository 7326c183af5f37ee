"""Quiet command-line runs: TensorFlow's C++ start-up log lines kept out of the user's stderr.

TensorFlow 2.21 prints, on import and on its first op, lines no user can act on::

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 00:00:1796047954.022986   20688 port.cc:153] oneDNN custom operations are on. ...
    I0000 00:00:1796047954.023295   20688 cudart_stub.cc:31] Could not find cuda drivers ...
    I0000 00:00:1796047954.066051   20688 cpu_feature_guard.cc:227] This TensorFlow binary ...
    To enable the following instructions: AVX2 AVX512F ..., rebuild TensorFlow with ...
    E0000 00:00:1796047958.150598   20688 cuda_platform.cc:52] failed call to cuInit: ...

``TF_CPP_MIN_LOG_LEVEL`` (set to 2 here, before TensorFlow is imported, unless the user set
it) no longer silences them: with ``TF_CPP_MIN_LOG_LEVEL=3`` the ``I`` lines and the absl line
still appear (measured, see ``docs/command_line.md``). So :func:`start` also sends file
descriptor 2 through a small filter process (this file run as a script) that drops the
lines :func:`is_noise` matches -- C++ ``I``/``W`` lines, the absl line, the second line of
the CPU-feature notice and the "no GPU" ``E`` lines -- and passes everything else through at
once (partial lines too, so progress bars move). A separate process, not a thread: when the
command crashes, what it wrote last still reaches the terminal. ``--verbose`` starts nothing.

Only command-line entry points call :func:`start` (:func:`tfneuro.apps.cli.run`,
:func:`tfneuro.apps.console.run_command`); importing the library changes nothing.
"""

from __future__ import annotations

import atexit
import os
import re
import signal
import subprocess
import sys

__all__ = ["is_noise", "start", "filter_stream", "ENV_LEVEL"]

#: TensorFlow's C++ log level set for quiet runs (2: errors only), unless already set.
ENV_LEVEL = "2"


def _head(levels: bytes) -> bytes:
    """Regex of a C++ log line up to ``file.cc:123] `` for the given levels: absl's
    ``I0000 00:00:1796047954.022986   20688 port.cc:153] `` or TensorFlow's older
    ``2025-09-17 14:44:05.157831: I external/.../cudart_stub.cc:32] ``."""
    lv = b"[" + levels + b"]"
    return (rb"^(?:" + lv + rb"\d{4} \d\d:\d\d:\d+\.\d+ +\d+ |\d{4}-\d\d-\d\d [\d:.]+: " + lv
            + rb" )\S+:\d+\] ")


_NOISE = [re.compile(p) for p in (
    _head(b"IW"),
    rb"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    rb"^To enable the following instructions: .*rebuild TensorFlow with the appropriate compiler",
    _head(b"IWEF") + rb"(?:failed call to cuInit|Unable to register cu\w+ factory)",
)]
_LINES = re.compile(rb"[^\r\n]*[\r\n]")
_started = False


def is_noise(line: bytes) -> bool:
    """True for a whole line (terminator included or not) that quiet runs drop."""
    return any(p.match(line) for p in _NOISE)


def _may_become_noise(partial: bytes) -> bool:
    """Could this unterminated start of a line still become a noise line? (Every noise line
    starts with I, W, E, T or a digit; other partial lines are passed on at once.)"""
    return partial[:1] in (b"I", b"W", b"E", b"T") or partial[:1].isdigit()


def filter_stream(read_fd: int, write_fd: int) -> None:
    """Copy ``read_fd`` to ``write_fd`` until end of file, dropping noise lines.

    Lines end at ``\\n`` or ``\\r`` (progress bars redraw with ``\\r``); an unterminated
    start of a line is passed on at once unless it may still become a noise line."""
    buf, passing = b"", False
    while True:
        chunk = os.read(read_fd, 65536)
        if not chunk:
            break
        buf += chunk
        out = []
        segs = _LINES.findall(buf)
        for seg in segs:
            if passing or not is_noise(seg):
                out.append(seg)
            passing = False
        buf = buf[sum(map(len, segs)):]
        if buf and (passing or not _may_become_noise(buf)):
            out.append(buf)
            buf, passing = b"", True
        if out:
            _write_all(write_fd, b"".join(out))
    if buf and (passing or not is_noise(buf)):
        _write_all(write_fd, buf)


def _write_all(fd: int, data: bytes) -> None:
    try:
        while data:
            data = data[os.write(fd, data):]
    except OSError:  # the terminal went away: keep draining so the command never blocks
        pass


def start(verbose: bool = False) -> None:
    """Quiet this process's stderr (once; nothing with ``verbose``): set
    ``TF_CPP_MIN_LOG_LEVEL`` and route file descriptor 2 through the filter process.

    Call it before TensorFlow is imported: lines printed earlier are not filtered."""
    global _started
    if _started or verbose:
        return
    _started = True
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", ENV_LEVEL)
    try:
        sys.stderr.flush()
        real = os.dup(2)
        read_fd, write_fd = os.pipe()
        # this file as a script, isolated (-I): it needs only the standard library, so the
        # filter starts whatever sys.path the command was given
        proc = subprocess.Popen([sys.executable, "-I", os.path.abspath(__file__)],
                                stdin=read_fd, stdout=real, close_fds=True)
    except OSError:  # no pipe or no process: stay loud rather than fail
        return
    os.close(read_fd)
    os.dup2(write_fd, 2)
    os.close(write_fd)
    atexit.register(_stop, proc, real)


def _stop(proc, real: int) -> None:
    """At exit: flush, give fd 2 back (the filter sees end of file), wait for the filter."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os.dup2(real, 2)
    os.close(real)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:  # a child process still holds the pipe: let it be
        pass


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the command, not its stderr
    filter_stream(0, 1)
