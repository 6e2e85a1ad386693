"""Data-parallel training on torch.distributed and Ray Train (issue 8)."""

__all__: list[str] = []
