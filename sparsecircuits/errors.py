"""The one exception type for bad user input: the CLI prints it as one line and exits 2."""


class UserError(ValueError):
    """Input the user can fix (bad path, bad config, impossible setting)."""
