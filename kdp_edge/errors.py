"""User-facing errors: each names the problem and the fix; the CLI prints them without a traceback."""


class KDPError(Exception):
    """An error caused by user input or environment, with a message that says how to fix it."""


class DataError(KDPError):
    pass


class ConfigError(KDPError):
    pass


class CheckpointError(KDPError):
    pass


class MissingExtraError(KDPError):
    """A feature needs an optional extra that is not installed."""

    def __init__(self, module: str, extra: str, feature: str):
        super().__init__(
            f"{feature} needs the '{module}' package, which is not installed. "
            f"Install the extra: pip install 'kdp-edge[{extra}]'"
        )


def require(module: str, extra: str, feature: str):
    """Import ``module`` or raise MissingExtraError naming the extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(module, extra, feature) from exc
