"""watcherd: a watch-folder daemon that turns recordings into transcripts next to them."""

__version__ = "0.1.0"

__all__ = ["__version__"]
