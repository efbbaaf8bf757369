"""Progress: shown by default where stderr is a terminal, with an explicit on/off; the Builder reports through it."""

import io

import pytest

import braze
from braze.progress import Counter, reporter, wanted

from .conftest import tiny_cnn


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _stderr(monkeypatch, stream):
    """NOTE: set in the test's body: pytest puts its own sys.stderr back between a fixture's setup and the test."""
    monkeypatch.setattr("sys.stderr", stream)
    return stream


@pytest.fixture
def terminal(monkeypatch):
    return lambda: _stderr(monkeypatch, FakeTerminal())


@pytest.fixture
def pipe(monkeypatch):
    return lambda: _stderr(monkeypatch, io.StringIO())


def test_shown_on_a_terminal_and_not_in_a_pipe_unless_asked(terminal, pipe):
    terminal()
    assert wanted(None) and wanted(True) and not wanted(False)
    pipe()
    assert not wanted(None) and wanted(True)


def test_builder_reports_each_phase_on_a_terminal_by_default(terminal):
    terminal = terminal()
    braze.Builder("cpu").build(braze.parse_onnx(tiny_cnn()))
    lines = terminal.getvalue().splitlines()
    assert lines[0].startswith("[braze] building 'tiny_cnn': 7 nodes")
    assert any("optimized: 7 nodes -> 5 layers" in line for line in lines)
    assert lines[-1].startswith("[braze] built 5 layers in")


def test_builder_is_silent_when_told(terminal):
    terminal = terminal()
    braze.Builder("cpu").build(braze.parse_onnx(tiny_cnn()), braze.BuilderConfig(progress=False))
    assert terminal.getvalue() == ""


def test_builder_reports_in_a_pipe_when_asked_or_to_a_callback(pipe):
    pipe = pipe()
    braze.Builder("cpu").build(braze.parse_onnx(tiny_cnn()))
    assert pipe.getvalue() == ""
    braze.Builder("cpu").build(braze.parse_onnx(tiny_cnn()), braze.BuilderConfig(progress=True))
    assert "[braze] built 5 layers" in pipe.getvalue()
    seen = []
    braze.Builder("cpu").build(braze.parse_onnx(tiny_cnn()), braze.BuilderConfig(progress=seen.append))
    assert seen[0].startswith("building 'tiny_cnn'") and seen[-1].startswith("built 5 layers")


def test_builder_says_it_parses_a_file_before_parsing_it(tmp_path):
    import onnx

    path = tmp_path / "cnn.onnx"
    onnx.save(tiny_cnn(), path)
    seen = []
    braze.Builder("cpu").build(str(path), braze.BuilderConfig(progress=seen.append))
    assert seen[0] == "parsing cnn.onnx"


def test_counter_redraws_one_line_and_ends_it(terminal):
    terminal = terminal()
    count = Counter("runs", 3)
    for i in range(1, 4):
        count(i)
    text = terminal.getvalue()
    assert text.startswith("\r[braze] runs: 1/3") and text.endswith("\r[braze] runs: 3/3\n") and text.count("\n") == 1


def test_counter_is_silent_in_a_pipe_unless_asked(pipe):
    pipe = pipe()
    Counter("runs", 2)(2)
    assert pipe.getvalue() == "" and reporter(None)("quiet") is None
    Counter("runs", 2, True)(2)
    reporter(True)("loud")
    assert pipe.getvalue() == "\r[braze] runs: 2/2\n[braze] loud\n"
