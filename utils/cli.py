"""The scaffold every script shares: a parser whose errors are one line, and a runner that turns the
problems a user can fix into one line on stderr and exit code 1 (no traceback).

    def main(argv=None):
        args = parse_args(argv)          # built on cli.ArgumentParser
        return cli.run_script(run, args)

    if __name__ == '__main__':
        sys.exit(main())
"""
import argparse
import sys

DEVICE_HELP = "'auto' (default: cuda > mps > cpu), 'cpu', 'cuda', 'cuda:N' or 'mps'"
EXIT_ERROR = 1   # a problem found while running
EXIT_USAGE = 2   # a bad command line (argparse's code)
EXIT_SIGNAL_BASE = 128  # stopped by signal N: exit code 128 + N (the shell's convention)
WORKER_ERROR_START, WORKER_ERROR_MARK = 'Caught ', ' in DataLoader worker process '  # torch's re-raised text


class UserError(RuntimeError):
    """A problem the user can fix; the message names it and the fix in one line.

    Domain errors (DatasetError, CheckpointError, TrainingError, ...) derive from it, so every
    script reports them the same way.
    """


class ArgumentParser(argparse.ArgumentParser):
    """ArgumentParser whose errors are a single line (no usage dump)."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def add_device_argument(parser):
    parser.add_argument('--device', default='auto', help=DEVICE_HELP)


def one_line(error):
    """The message of `error` as one line; OSErrors become '<reason>: <path>'.

    torch's DataLoader re-raises an error of a worker process as the same class with the text
    "Caught <Class> in DataLoader worker process <n>.", the worker's traceback, and last the
    line "<module>.<Class>: <message>"; that message is what is returned for such errors.
    """
    if isinstance(error, OSError) and error.strerror:
        return f"{error.strerror.lower()}: {error.filename}" if error.filename else error.strerror.lower()
    text = str(error.args[0]) if error.args else ''
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    if len(lines) > 1 and lines[0].startswith(WORKER_ERROR_START) and WORKER_ERROR_MARK in lines[0]:
        qualified_class, separator, message = lines[-1].partition(': ')
        return message if separator and qualified_class.endswith(type(error).__name__) else lines[-1]
    return lines[0]


def run_script(function, *args, **kwargs):
    """Call function(*args, **kwargs); return its exit code (an int it returns, else 0), or 1 after printing a
    one-line error for a UserError, an OSError (missing file, disk full, read-only folder) or a
    ValueError / KeyError raised by argument and file checks."""
    try:
        code = function(*args, **kwargs)
    except (UserError, OSError, ValueError, KeyError) as error:
        print(f'error: {one_line(error)}', file=sys.stderr)
        return EXIT_ERROR
    return code if isinstance(code, int) else 0
