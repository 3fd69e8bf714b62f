"""What the converters of delimited text files (``csv``, ``text``) share: the check of a field separator."""

from convlstm_tl.errors import UserError


def check_delimiter(delimiter, default="a tab"):
    """Check a field separator for Python's ``csv`` module; return it.

    Raises:
        UserError: unless it is one character other than a double quote or a
            line break (``default`` names the converter's default in the message).
    """
    if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in '"\r\n':
        raise UserError(f"the delimiter must be one character, not a double quote or line break ({default} by"
                        f" default). Received: delimiter={delimiter!r}")
    return delimiter
