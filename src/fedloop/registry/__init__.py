"""Model versions, aliases, lineage, packaging (weights + ONNX + signature) and traffic splits."""

from fedloop.registry.aliases import (
    CHALLENGER,
    CHAMPION,
    ModelRef,
    parse_ref,
    promote,
    resolve,
    rollback,
)
from fedloop.registry.deployments import (
    CanarySpec,
    TrafficSpec,
    clear_traffic,
    find_traffic,
    set_traffic,
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
    "CanarySpec",
    "Lineage",
    "ModelPackage",
    "ModelRef",
    "ModelRegistry",
    "TrafficSpec",
    "check_onnx",
    "clear_traffic",
    "find_traffic",
    "infer_signature",
    "lineage",
    "parse_ref",
    "promote",
    "read_package",
    "resolve",
    "rollback",
    "set_traffic",
    "write_package",
]
