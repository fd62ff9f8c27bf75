"""cadft: fine-tune language models to predict coronary artery disease from UK Biobank records written as text."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cadft")
except PackageNotFoundError:  # run from a source tree that is not installed
    __version__ = "0+unknown"
