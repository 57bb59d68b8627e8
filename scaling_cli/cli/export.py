"""`scale export`: write a finished run as a Hugging Face model directory that `transformers` loads."""

from __future__ import annotations

from pathlib import Path

import typer

from scaling_cli.cli.render import say
from scaling_cli.errors import SpecError

FORMATS = ("hf",)


def export_command(
    results: Path = typer.Argument(..., help="Results directory of a sweep run with --keep-final."),
    run_id: str = typer.Option(..., "--run", help="Run id (or a unique prefix of it), from runs.parquet."),
    fmt: str = typer.Option("hf", "--format", help="hf: model.safetensors, config.json and tokenizer files."),
    out_dir: Path = typer.Option(..., "--out", help="Directory to write the model into."),
) -> None:
    """Export one finished run's final weights: gpt2 as GPT2LMHeadModel, llama as LlamaForCausalLM.

    Example: scale sweep sweeps/llama.toml --keep-final; scale export results/llama --run 1a2b3c --out hf/1a2b3c
    """
    from scaling_cli.export import export_hf

    if fmt not in FORMATS:
        raise SpecError("--format", "value", f"must be one of {', '.join(FORMATS)}, got {fmt!r}")
    done = export_hf(results, run_id, out_dir)
    say(f"exported run {done['run_id']} as {done['hf_class']} to {done['out']}: {', '.join(done['files'])}")
