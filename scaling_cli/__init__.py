"""scale: run scaling-law sweeps, fit the laws, and plot them."""

__version__ = "0.1.0"
