"""Fit scaling laws to sweep results: the three Chinchilla approaches, Kaplan laws, a linear baseline,
bootstrap intervals, a holdout extrapolation check and predictions. numpy/scipy/pandas only, no torch.
"""

from scaling_cli.fit.allocation import optimal_allocation
from scaling_cli.fit.pipeline import FitOptions, fit_all, parse_laws, write_fit
from scaling_cli.fit.predict import predict
from scaling_cli.fit.table import TableOptions, load_table

__all__ = [
    "FitOptions",
    "TableOptions",
    "fit_all",
    "load_table",
    "optimal_allocation",
    "parse_laws",
    "predict",
    "write_fit",
]
