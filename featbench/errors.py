"""Exceptions raised by featbench for bad input.

Library code raises these; the command line turns them into one-line messages
(:class:`click.ClickException`) at its boundary only.
"""

from __future__ import annotations


class FeatbenchError(Exception):
    """Base class of every error featbench reports to a user."""


class UnknownNameError(FeatbenchError, KeyError):
    """A registry name (extractor, classifier, dataset) that does not exist."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DataError(FeatbenchError, ValueError):
    """A dataset, image file or data folder that cannot be used as it is."""


class ParameterError(FeatbenchError, ValueError):
    """A parameter given by name (e.g. ``-p hog.block_norm=none``) that is invalid."""


class OutputError(FeatbenchError):
    """A file or folder featbench was asked to write that cannot be written."""


class FeatbenchWarning(UserWarning):
    """Base class of the warnings featbench gives (shown as one line by the CLI)."""


class ImageWarning(FeatbenchWarning):
    """An image that decodes, with something the user should know (it names the file)."""
