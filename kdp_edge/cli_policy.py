"""The one error policy of every ``kdp-edge`` command (issue #23 item 6), in a module of its own so that
command modules outside :mod:`kdp_edge.cli` (the bridge's, calibration's) can use it without an import
cycle through the CLI."""

from __future__ import annotations

import sys

import click

from .errors import KDPError


def fail(message: str, fix: str = "", code: int = 2) -> None:
    """Print ``error: MESSAGE`` (and ``  fix: FIX``) on stderr and exit with ``code`` (2: bad input)."""
    text = f"error: {message.rstrip()}"
    if fix and "fix:" not in message:
        text += f"\n  fix: {fix}"
    click.secho(text, fg="red", err=True)
    sys.exit(code)


def _interrupted() -> None:
    click.echo("interrupted (Ctrl-C)", err=True)
    sys.exit(130)


class KDPGroup(click.Group):
    """The one error policy of every ``kdp-edge`` command (and its subgroups).

    - bad input (click usage errors, :class:`KDPError`, the serial link's ``LinkError``, other click
      exceptions, a path the OS refuses): ``error: ...`` with the fix on stderr, exit code 2, no traceback;
    - Ctrl-C (SIGINT) wherever it lands outside a command's own handling: ``interrupted`` and exit
      code 130 (never click's ``Aborted!`` and exit 1). Long-running commands catch SIGINT themselves
      to save or stop cleanly, then exit with their documented code.
    """

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.UsageError as e:
            ctx = e.ctx
            path = ctx.command_path if ctx is not None else (prog_name or "kdp-edge")
            usage = f" (usage: {ctx.get_usage().removeprefix('Usage: ')})" if ctx is not None else ""
            fail(e.format_message(), f"see `{path} --help`{usage}")
        except click.exceptions.Abort:  # click turns KeyboardInterrupt (and EOF at a prompt) into Abort
            _interrupted()
        except KeyboardInterrupt:
            _interrupted()
        except click.ClickException as e:
            fail(e.format_message())
        except KDPError as e:
            fail(str(e))
        except OSError as e:
            if isinstance(e, BrokenPipeError):  # `kdp-edge ... | head`: the reader left, nothing to report
                sys.exit(1)
            if _is_link_error(e):
                fail(str(e))
            fail(f"{e.strerror or e}" + (f": {e.filename}" if e.filename else ""),
                 "check the path exists and that you may read / write it")
        except RuntimeError as e:
            if _is_link_error(e):  # firmware_bridge.errors.LinkError: "problem\n  fix: ..."
                fail(str(e))
            raise
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)

    def group(self, *args, **kwargs):  # subgroups (kdp-edge data, calibrate) share the policy
        kwargs.setdefault("cls", KDPGroup)
        return super().group(*args, **kwargs)


def _is_link_error(e: BaseException) -> bool:
    mod = sys.modules.get("firmware_bridge.errors")
    return mod is not None and isinstance(e, mod.LinkError)
