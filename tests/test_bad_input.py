"""Bad input to `scale`: one line `error: <where>: <field>: <problem>` on stderr, exit 2, no traceback and
nothing written. One table for every command, run in-process (tests/test_cli.py runs the installed script's
own exit path); files of a case are written into the test's directory, named in the table as {spec}, {tmp}."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import TINY, scale_in_process


def spec_variant(old: str, new: str):
    """markov-tiny with `old` replaced by `new`."""

    def write(path: Path) -> None:
        text = TINY.read_text()
        assert old in text, old
        path.write_text(text.replace(old, new))

    return write


def spec_text(text: str):
    return lambda path: path.write_text(text)


SWEEP = ("sweep", "{spec}", "--out", "{tmp}/out")
PREPARE = ("data", "prepare", "markov")


def prepare(options: tuple, error: str) -> tuple:
    """A case of `scale data prepare markov OPTIONS` whose one line is `error: <error>`."""
    return None, (*PREPARE, *options), f"error: {error}", ()


# id: (what {spec} holds (None: no file), the command, the start of its one error line, words in that line)
CASES = {
    "sweep-missing-spec": (
        None,
        ("sweep", "sweeps/nope.toml", "--out", "{tmp}/out"),
        "error: sweeps/nope.toml: file: not found",
        (),
    ),
    "sweep-misspelled-key": (
        spec_variant("batch_size =", "batch_sise ="),
        SWEEP,
        "error: {spec}: train.batch_sise: unknown key",
        ("did you mean 'batch_size'",),
    ),
    "sweep-unknown-key": (
        spec_variant("lr = 1e-2", "lrr = 1e-2"),
        SWEEP,
        "error: {spec}: train.lrr: ",
        ("did you mean 'lr'",),
    ),
    "sweep-wrong-type": (
        spec_variant("d_model = [16, 32, 48]", 'd_model = "big"'),
        SWEEP,
        "error: {spec}: model.d_model: must be an integer, got 'big'",
        (),
    ),
    "sweep-malformed-toml": (spec_text('name = "x\n[model\n'), SWEEP, "error: {spec}: toml: ", ()),
    "sweep-toml-without-value": (spec_text("name = \n"), SWEEP, "error: {spec}: toml: ", ("line 1",)),
    "sweep-no-workers": (
        None,
        ("sweep", str(TINY), "--workers", "0", "--out", "{tmp}/out"),
        "error: --workers: value: must be at least 1, got 0",
        (),
    ),
    "sweep-negative-retries": (
        None,
        ("sweep", str(TINY), "--retries", "-1", "--out", "{tmp}/out"),
        "error: --retries: value: must be 0 or more, got -1",
        (),
    ),
    "fit-unknown-option": (None, ("fit", "--no-such-option"), "error: --no-such-option: no such option", ()),
    "status-missing-directory": (None, ("status", "{tmp}/nope"), "error: {tmp}/nope: directory: not found", ()),
    "data-unknown-source": (None, ("data", "prepare", "nope"), "error: nope: dataset: unknown data set", ()),
    "data-set-wrong-type": prepare(("--set", "markov_order=x"), "--set: data.markov_order: must be an integer"),
    "data-negative-option": prepare(
        ("--min-doc-bytes", "-1"), "--min-doc-bytes: data.min_doc_bytes: must be 0 or more"
    ),
    "data-bpe-without-vocab": prepare(
        ("--tokenizer", "bpe"), "tokenizer: vocab_size: the bpe tokenizer needs a vocab_size"
    ),
    "data-memory-not-a-size": prepare(("--max-memory", "lots"), "--max-memory: max_memory: expected a size"),
    "data-memory-too-small": (None, (*PREPARE, "--max-memory", "1M"), "error: ", ("max_memory", "at least 128 MiB")),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, tmp_path):
    write, args, start, words = CASES[case]
    spec, work = tmp_path / "spec.toml", tmp_path / "work"
    work.mkdir()
    if write is not None:
        write(spec)
    fill = {"spec": str(spec), "tmp": str(work)}
    result = scale_in_process(*(arg.format(**fill) for arg in args), env={"SCALE_CACHE": str(work / "cache")})
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith(start.format(**fill)), result.stderr
    assert all(word in result.stderr for word in words), result.stderr
    assert sorted(p.name for p in work.iterdir()) == [], "a refused command wrote files"
