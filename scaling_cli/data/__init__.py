"""The data layer: corpus sources, cleaning, tokenisers, lz4 token shards with a manifest, batches and
compressor baselines. See docs/internals.md ("data") for the contract."""

from scaling_cli.data.batches import get_batch
from scaling_cli.data.catalog import list_sources, stats
from scaling_cli.data.options import DataOptions, parse_data_options
from scaling_cli.data.prepared import PreparedData, open_prepared, prepare

__all__ = [
    "DataOptions",
    "PreparedData",
    "get_batch",
    "list_sources",
    "open_prepared",
    "parse_data_options",
    "prepare",
    "stats",
]
