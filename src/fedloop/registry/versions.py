"""``ModelRegistry``: register model versions (weights + ONNX + signature) and load them back."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from fedloop.core import (
    DatasetId,
    InvalidInput,
    ModelVersionId,
    NotFound,
    Parameters,
    RunId,
    Signature,
    decode_parameters,
    encode_parameters,
    validate_parameters,
)

# The module, not the package: fedloop.learn names the torch adapter, and the serving path
# (which imports the registry) must not reach torch (import contract).
from fedloop.learn.profiles import DataProfile, decode_profile, encode_profile
from fedloop.registry import aliases as _aliases
from fedloop.registry.lineage import Lineage, lineage
from fedloop.registry.packaging import ModelPackage, check_onnx
from fedloop.store import (
    AliasChange,
    ArtifactStore,
    Contributor,
    ModelVersion,
    Project,
    RegisteredModel,
    SqlMetadataStore,
    check_name,
)

__all__ = ["ModelRegistry"]


def _metrics(values: Mapping[str, Any] | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in (values or {}).items():
        try:
            number = float(value)
        except (TypeError, ValueError) as err:
            raise InvalidInput(
                f"metric {key!r} must be a number; got {value!r}.", field=f"metrics.{key}"
            ) from err
        if number != number or number in (float("inf"), float("-inf")):
            raise InvalidInput(
                f"metric {key!r} must be finite; got {value!r}.", field=f"metrics.{key}"
            )
        out[str(key)] = number
    return out


def _json_mapping(values: Mapping[str, Any] | None, *, field: str) -> dict[str, Any] | None:
    if values is None:
        return None
    try:
        return dict(json.loads(json.dumps(dict(values), allow_nan=False)))
    except (TypeError, ValueError) as err:
        raise InvalidInput(
            f"`{field}` must be a JSON mapping of finite numbers, strings, lists and mappings: {err}.",
            field=field,
            hint="Convert numpy scalars with float() and drop non-JSON values.",
        ) from err


class ModelRegistry:
    """Model versions, aliases and lineage over a metadata store and an artifact store.

    Parameters
    ----------
    metadata : SqlMetadataStore
        Where versions, aliases and events are recorded.
    artifacts : ArtifactStore
        Where weights and ONNX graphs are kept (content-addressed).
    project : Project
        The project new models belong to.

    Example
    -------
    >>> registry = ModelRegistry(ws.metadata, ws.artifacts, ws.project)  # doctest: +SKIP
    >>> mv = registry.register("fraud", weights=params, onnx_model=graph, run_id=run.id)
    >>> registry.promote("fraud", mv.version, alias="champion")
    """

    def __init__(
        self, metadata: SqlMetadataStore, artifacts: ArtifactStore, project: Project
    ) -> None:
        self.metadata = metadata
        self.artifacts = artifacts
        self.project = project

    def register(
        self,
        name: str,
        *,
        weights: Mapping[str, Any],
        onnx_model: bytes,
        signature: Signature | None = None,
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, str] | None = None,
        run_id: RunId | None = None,
        parent_version: int | None = None,
        datasets: Sequence[tuple[DatasetId, str]] = (),
        contributors: Sequence[Contributor] = (),
        privacy: Mapping[str, Any] | None = None,
        description: str = "",
        actor: str = "system",
    ) -> ModelVersion:
        """Check, store and record a new model version.

        Everything is validated before anything is written: the weights (names, dtypes,
        finite values), the ONNX graph (valid, runs in onnxruntime on zeros) and the
        signature (names, dtypes and shapes match the graph). Artifacts are content-addressed,
        and the version row, its lineage and its audit event commit in one transaction.

        Parameters
        ----------
        name : str
            Registered model name (created on first use).
        weights : Mapping[str, ndarray]
            Trained parameters.
        onnx_model : bytes
            Serialized ONNX graph for serving.
        signature : Signature or None
            Declared inputs/outputs; read off the graph when None.
        metrics : Mapping or None
            Evaluation metrics (finite numbers).
        tags : Mapping or None
            Labels.
        run_id : RunId or None
            Producing run.
        parent_version : int or None
            Version of the same model this one was warm-started from.
        datasets : sequence of (DatasetId, role)
            Data sets used.
        contributors : sequence of Contributor
            Clients or workers that contributed.
        privacy : Mapping or None
            Differential-privacy cost (epsilon, delta, …).
        description : str
            Free text.
        actor : str
            Who registers (audit).

        Returns
        -------
        ModelVersion
            The new version (numbered 1, 2, … per model).

        Raises
        ------
        InvalidInput, SignatureMismatch
            When the weights, graph or signature are bad (nothing is written).
        NotFound
            When ``run_id`` or ``parent_version`` does not exist (nothing is recorded).
        """
        check_name(name, field="model_name")
        params = validate_parameters(weights, field="weights")
        sig = check_onnx(onnx_model, signature)
        metric_values = _metrics(metrics)
        parent_id: ModelVersionId | None = None
        if parent_version is not None:
            parent_id = self.metadata.get_model_version(name, parent_version).id
        if run_id is not None:
            self.metadata.get_run(run_id)
        for i, (dataset_id, _) in enumerate(datasets):
            if self.metadata.find_dataset(dataset_id) is None:
                raise NotFound(
                    f"data set {dataset_id!r} (datasets[{i}]) does not exist.",
                    field=f"datasets[{i}]",
                    value=dataset_id,
                    hint="Record it first with metadata.register_dataset().",
                )
        privacy_values = _json_mapping(privacy, field="privacy")
        weights_ref = self.artifacts.put_bytes(encode_parameters(params))
        onnx_ref = self.artifacts.put_bytes(bytes(onnx_model))
        return self.metadata.create_model_version(
            self.project.id,
            name,
            weights_digest=weights_ref.digest,
            onnx_digest=onnx_ref.digest,
            signature=sig,
            metrics=metric_values,
            tags={str(k): str(v) for k, v in (tags or {}).items()},
            run_id=run_id,
            parent_version_id=parent_id,
            dataset_ids=datasets,
            contributors=contributors,
            privacy=privacy_values,
            description=description,
            actor=actor,
        )

    # -- reading ---------------------------------------------------------------------------
    def get(self, ref: str | _aliases.ModelRef) -> ModelVersion:
        """Return the version a reference (``fraud@champion``, ``fraud:3``, ``fraud``) points at.

        Raises
        ------
        NotFound
            When it does not exist.
        """
        return _aliases.resolve(self.metadata, ref)

    def list_models(self) -> list[RegisteredModel]:
        """Return this project's registered models."""
        return self.metadata.list_registered_models(self.project.id)

    def list_versions(self, name: str) -> list[ModelVersion]:
        """Return a model's versions, newest first.

        Raises
        ------
        NotFound
            When the model does not exist.
        """
        return self.metadata.list_model_versions(name)

    def load_weights(self, version: ModelVersion) -> Parameters:
        """Return a version's weights, integrity-checked.

        Raises
        ------
        ArtifactMissing, ArtifactCorrupt
            When the stored bytes are gone or changed.
        """
        return decode_parameters(self.artifacts.get_bytes(version.weights_digest), field="weights")

    def load_onnx(self, version: ModelVersion) -> bytes:
        """Return a version's ONNX graph, integrity-checked.

        Raises
        ------
        ArtifactMissing, ArtifactCorrupt
            When the stored bytes are gone or changed.
        """
        return self.artifacts.get_bytes(version.onnx_digest)

    def package(self, ref: str | _aliases.ModelRef) -> ModelPackage:
        """Return weights, graph and signature of a version together.

        Raises
        ------
        NotFound, ArtifactMissing, ArtifactCorrupt
            When the version or its bytes are missing or changed.
        """
        mv = self.get(ref)
        return ModelPackage(
            weights=self.load_weights(mv),
            onnx_model=self.load_onnx(mv),
            signature=mv.signature,
            metadata={
                "model": mv.model_name,
                "version": mv.version,
                "version_id": mv.id,
                "run_id": mv.run_id,
                "metrics": mv.metrics,
                "privacy": mv.privacy,
            },
        )

    # -- reference profiles ----------------------------------------------------------------
    def attach_profile(
        self,
        version: ModelVersion,
        profile: DataProfile,
        *,
        source: str = "central",
        actor: str = "system",
    ) -> None:
        """Store ``profile`` as the reference the monitor compares the version's traffic with.

        Parameters
        ----------
        version : ModelVersion
            The version.
        profile : DataProfile
            Its reference profile (columns named as the payload log names them: the input
            tensor's ``name[j]`` and the output's name).
        source : {"central", "federated", "traffic"}
            How it was made (recorded in the audit event).
        actor : str
            Who attaches (audit).
        """
        ref = self.artifacts.put_bytes(encode_profile(profile))
        self.metadata.attach_profile(
            version.id,
            profile_digest=ref.digest,
            source=source,
            num_rows=profile.num_rows,
            actor=actor,
        )

    def find_profile(self, version: ModelVersion) -> DataProfile | None:
        """Return a version's reference profile, or None when it has none.

        Raises
        ------
        ArtifactMissing, ArtifactCorrupt
            When the stored bytes are gone or changed.
        """
        record = self.metadata.find_profile(version.id)
        if record is None:
            return None
        return decode_profile(self.artifacts.get_bytes(record.profile_digest))

    # -- aliases and lineage ---------------------------------------------------------------
    def promote(
        self,
        name: str,
        version: int,
        *,
        alias: str = _aliases.CHAMPION,
        actor: str = "system",
        reason: str = "",
    ) -> AliasChange:
        """Point ``alias`` at ``version`` (see :func:`fedloop.registry.aliases.promote`)."""
        return _aliases.promote(
            self.metadata, name, version, alias=alias, actor=actor, reason=reason
        )

    def champion_if_first(self, version: ModelVersion, *, actor: str, reason: str) -> ModelVersion:
        """Make ``version`` its model's champion when the model has none yet.

        What a training flow does with the first model it registers: later versions are
        challengers until a gate (or a person) promotes them.

        Returns
        -------
        ModelVersion
            The version as stored now (with the champion alias when it was set).
        """
        name = version.model_name
        if self.metadata.find_alias(name, _aliases.CHAMPION) is not None:
            return version
        self.promote(name, version.version, alias=_aliases.CHAMPION, actor=actor, reason=reason)
        return self.metadata.get_model_version(name, version.version)

    def rollback(
        self, name: str, *, alias: str = _aliases.CHAMPION, actor: str = "system", reason: str = ""
    ) -> AliasChange:
        """Move ``alias`` back one step (see :func:`fedloop.registry.aliases.rollback`)."""
        return _aliases.rollback(self.metadata, name, alias=alias, actor=actor, reason=reason)

    def alias_history(self, name: str, alias: str | None = None) -> list[AliasChange]:
        """Return the alias moves of a model, oldest first."""
        return self.metadata.alias_history(name, alias)

    def lineage(self, name: str, version: int) -> Lineage:
        """Return the lineage of a version (see :func:`fedloop.registry.lineage.lineage`)."""
        return lineage(self.metadata, name, version)
