"""Assertions shared by the CLI tests."""


def one_line_error(result):
    """A user error: exit code 2, one line on stderr, no traceback; returns that line."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]
