"""Model versions, aliases, lineage and packaging (weights + ONNX graph + input signature)."""

from fedloop.registry.aliases import (
    CHALLENGER,
    CHAMPION,
    ModelRef,
    parse_ref,
    promote,
    resolve,
    rollback,
)
from fedloop.registry.lineage import Lineage, lineage
from fedloop.registry.packaging import (
    ModelPackage,
    check_onnx,
    infer_signature,
    read_package,
    write_package,
)
from fedloop.registry.versions import ModelRegistry

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "Lineage",
    "ModelPackage",
    "ModelRef",
    "ModelRegistry",
    "check_onnx",
    "infer_signature",
    "lineage",
    "parse_ref",
    "promote",
    "read_package",
    "resolve",
    "rollback",
    "write_package",
]
