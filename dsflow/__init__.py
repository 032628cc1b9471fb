"""dsflow: dataset gradient flows (Alvarez-Melis & Fusi, ICML 2021) as PyTorch Lightning modules."""

__version__ = "0.1.0"
__all__ = ["__version__"]
