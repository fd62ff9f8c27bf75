"""The one exception type for bad input and bad config: CLIs print its message (no traceback) and exit 2."""


class CadftError(ValueError):
    """A problem the user can fix; the message names the file/key, the problem and the allowed values."""
