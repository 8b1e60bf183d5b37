"""ehospital: an open-source internet hospital."""

__version__ = "0.1.0"
