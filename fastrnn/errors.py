"""fastrnn's own exceptions."""

__all__ = ["ModelFileError"]


class ModelFileError(ValueError):
    """A model file or state dict that fastrnn cannot load: malformed, incomplete or unsupported.

    The message names the file (or source), the part at fault, what was expected and what was
    found.
    """
