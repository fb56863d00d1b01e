"""Tumor Fabrication: synthetic annotated brain-tumour MRI from healthy scans."""

__version__ = "0.1.0"
