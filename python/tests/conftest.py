# SPDX-License-Identifier: Apache-2.0
# Fixtures of the Python suite: every test gets its own channel directory (SHMCHAN_DIR), and
# `peer` starts the other side of a channel as a real process (tests/peer.py).
import os
import subprocess
import sys
from pathlib import Path

import pytest

PEER = Path(__file__).resolve().parent / "peer.py"


@pytest.fixture(autouse=True)
def channel_dir(tmp_path, monkeypatch):
    directory = tmp_path / "channels"
    directory.mkdir()
    monkeypatch.setenv("SHMCHAN_DIR", str(directory))
    return directory


class Peer:
    """A process running one scenario of peer.py; wait() checks how it ended."""

    def __init__(self, *args):
        self.process = subprocess.Popen([sys.executable, str(PEER), *map(str, args)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, env=dict(os.environ))

    def wait(self, expected=0, timeout=60):
        out, err = self.process.communicate(timeout=timeout)
        assert self.process.returncode == expected, f"peer exited {self.process.returncode}: {err}"
        return out

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate()


@pytest.fixture
def peer():
    started = []

    def start(*args):
        p = Peer(*args)
        started.append(p)
        return p

    yield start
    for p in started:
        p.kill()
