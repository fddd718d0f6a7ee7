"""The exception types for mistakes a user can fix: their message is shown as one line."""


class UserError(Exception):
    """A problem caused by input or configuration; the message says what to do next."""


class ConfigError(UserError):
    """A setting, or a deployment state such as an unmigrated schema, that a command refuses to
    run with (the CLI exits 2)."""
