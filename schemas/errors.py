"""The one exception type for mistakes a user can fix: its message is shown as one line."""


class UserError(Exception):
    """A problem caused by input or configuration; the message says what to do next."""
