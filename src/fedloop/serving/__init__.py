"""The inference server: routing between versions, batching, validation, metrics and payload log (issue 4)."""

__all__: list[str] = []
