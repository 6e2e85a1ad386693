"""The control-plane HTTP API: a thin shell over the packages below it."""

__all__: list[str] = []
