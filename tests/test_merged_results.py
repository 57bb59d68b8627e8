"""A results directory that merged grids keeps every spec it ran (specs/, oldest first, beside spec.toml, the
last), and a spec.toml that cannot be read is refused in one line instead of skipping the different-sweep check."""

from __future__ import annotations

from conftest import TINY, scale_in_process

from scaling_cli.store import Store

GRID_A = 'name = "merge"\n[model]\nd_model = [16]\n'
GRID_B = 'name = "merge"\n[model]\nd_model = [16, 32]\n'


def test_each_spec_run_in_a_directory_is_kept_once_in_the_order_first_run(tmp_path):
    store = Store(tmp_path / "out")
    for text in (GRID_A, GRID_B, GRID_A, GRID_B):
        store.init(text, [])
    assert store.specs() == [GRID_A, GRID_B]
    assert (store.root / "spec.toml").read_text() == GRID_B
    assert sorted(p.name[:4] for p in (store.root / "specs").iterdir()) == ["001-", "002-"]


def test_a_directory_from_before_specs_keeps_the_spec_it_held(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "spec.toml").write_text(GRID_A)
    Store(out).init(GRID_B, [])
    assert Store(out).specs() == [GRID_A, GRID_B]


def test_a_merged_sweep_remembers_both_grids(tiny_results, tmp_path):
    fewer = tmp_path / "fewer.toml"
    fewer.write_text(TINY.read_text().replace("d_model = [16, 32, 48]", "d_model = [16, 32]"))
    result = scale_in_process("sweep", fewer, "--out", tiny_results)
    assert result.returncode == 0, result.stderr
    assert "0 added" in result.stdout, result.stdout  # every run of the smaller grid is trained already
    assert Store(tiny_results).specs() == [TINY.read_text(), fewer.read_text()]


def test_an_unreadable_spec_toml_is_refused_in_one_line(tiny_results):
    (tiny_results / "spec.toml").write_text('name = "markov-tiny\n')
    attempts = sorted(p.read_text() for p in tiny_results.glob("runs/*/attempts.jsonl"))
    result = scale_in_process("sweep", TINY, "--out", tiny_results)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith(f"error: {tiny_results}: spec.toml: unreadable"), result.stderr
    assert (tiny_results / "spec.toml").read_text() == 'name = "markov-tiny\n'  # left for the user to look at
    assert sorted(p.read_text() for p in tiny_results.glob("runs/*/attempts.jsonl")) == attempts
