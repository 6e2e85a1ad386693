"""The dashboard: a thin shell over the packages below it (issue 9)."""

__all__: list[str] = []
