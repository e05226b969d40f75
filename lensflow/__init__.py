"""lensflow: keep an e-commerce visual search engine fresh and trustworthy."""

__version__ = "0.1.0"
