"""The server side of secure aggregation: a transport-free state machine that sees only sums."""

from __future__ import annotations

import os

import numpy as np

from fedloop.core import AggregationError, Conflict, InvalidInput
from fedloop.federated.secagg import keys
from fedloop.federated.secagg._graph import neighbour_sets
from fedloop.federated.secagg.masks import SEED_BYTES, expand_seed
from fedloop.federated.secagg.messages import (
    AdvertiseKeys,
    AggregateResult,
    EncryptedShare,
    MaskedInput,
    Roster,
    SecAggConfig,
    ShareBundle,
    ShareKeys,
    UnmaskRequest,
    UnmaskResponse,
)
from fedloop.federated.secagg.shamir import SHARE_BYTES, reconstruct_secret

__all__ = ["SecAggServer"]

_STAGES = ("advertise", "share", "mask", "unmask", "done")


class SecAggServer:
    """The server's part in one round of secure aggregation.

    Collect messages with the ``handle_*`` methods and close each round with `roster`,
    `share_bundles`, `unmask_request` and `aggregate`. Clients missing when a round
    closes are out of the round: those that shared keys but sent no input are
    "dropped", and their pairwise masks are removed with their reconstructed mask keys.
    The server only learns the sum of the survivors' inputs. It asks survivors only for
    self-mask seeds and dropped clients only for mask keys, and refuses responses that
    offer anything else.

    Parameters
    ----------
    session : str
        Unique per round; salts every derived key.
    config : SecAggConfig
        The round's parameters.

    Raises
    ------
    InvalidInput
        If ``session`` is empty.

    Examples
    --------
    >>> from fedloop.federated.secagg import SecAggClient
    >>> server = SecAggServer("round-1", SecAggConfig(threshold=2, vector_length=2))
    >>> clients = [SecAggClient(name) for name in ("a", "b", "c")]
    >>> for client in clients:
    ...     server.handle_advertise(client.advertise())
    >>> roster = server.roster()
    >>> for client in clients:
    ...     server.handle_share_keys(client.share(roster))
    >>> bundles = server.share_bundles()
    >>> for i, client in enumerate(clients[:2]):  # client "c" drops out
    ...     server.handle_masked_input(client.masked_input(bundles[client.client_id], [i, 1.0]))
    >>> request = server.unmask_request()
    >>> for client in clients[:2]:
    ...     server.handle_unmask(client.unmask(request))
    >>> server.aggregate().total.tolist()
    [1.0, 2.0]
    """

    def __init__(self, session: str, config: SecAggConfig) -> None:
        if not isinstance(session, str) or not session:
            raise InvalidInput("`session` must be a non-empty str.", field="session")
        self.session = session
        self.config = config
        self._stage = "advertise"
        self._graph_seed = os.urandom(SEED_BYTES)
        self._advertised: dict[str, AdvertiseKeys] = {}
        self._roster: Roster | None = None
        self._index: dict[str, int] = {}
        self._graph: dict[str, frozenset[str]] = {}
        self._shared: dict[str, ShareKeys] = {}
        self._masked: dict[str, np.ndarray] = {}
        self._request: UnmaskRequest | None = None
        self._responders: set[str] = set()
        # Opened shares by owner, then by holder's x: the two are disjoint by construction.
        self.self_mask_shares: dict[str, dict[int, bytes]] = {}
        self.key_shares: dict[str, dict[int, bytes]] = {}

    def handle_advertise(self, message: AdvertiseKeys) -> None:
        """Round 0: record a client's public keys.

        Parameters
        ----------
        message : AdvertiseKeys

        Raises
        ------
        InvalidInput
            If the id is empty or repeated, or a key is malformed.
        Conflict
            If round 0 is closed.
        """
        self._check_stage("advertise")
        if not isinstance(message.client_id, str) or not message.client_id:
            raise InvalidInput(
                "`advertise.client_id` must be a non-empty str.", field="advertise.client_id"
            )
        if message.client_id in self._advertised:
            raise InvalidInput(
                f"`advertise.client_id` {message.client_id!r} advertised twice.",
                field="advertise.client_id",
                value=message.client_id,
            )
        keys.load_public_key(message.cipher_public_key, field="advertise.cipher_public_key")
        keys.load_public_key(message.mask_public_key, field="advertise.mask_public_key")
        self._advertised[message.client_id] = message

    def roster(self) -> Roster:
        """Close round 0 and return the roster to send to every member.

        Returns
        -------
        Roster

        Raises
        ------
        AggregationError
            If fewer than ``threshold`` clients advertised.
        Conflict
            If round 0 is already closed.
        """
        self._check_stage("advertise")
        self._require_at_least(len(self._advertised), "advertise")
        ids = sorted(self._advertised)
        self._index = {client_id: i + 1 for i, client_id in enumerate(ids)}
        self._graph = neighbour_sets(
            ids, degree=self.config.neighbours, graph_seed=self._graph_seed
        )
        self._roster = Roster(
            session=self.session,
            config=self.config,
            members=tuple(self._advertised[client_id] for client_id in ids),
            graph_seed=self._graph_seed,
        )
        self._stage = "share"
        return self._roster

    def handle_share_keys(self, message: ShareKeys) -> None:
        """Round 1: record a member's sealed shares.

        Parameters
        ----------
        message : ShareKeys

        Raises
        ------
        InvalidInput
            If the sender is unknown or repeated, or the shares are not exactly one per
            neighbour, each from the sender.
        Conflict
            If round 1 is not open.
        """
        self._check_stage("share")
        sender = self._known(message.client_id, "share_keys.client_id")
        if sender in self._shared:
            raise InvalidInput(
                f"`share_keys.client_id` {sender!r} shared twice.", field="share_keys.client_id"
            )
        recipients = [share.recipient for share in message.shares]
        if any(share.sender != sender for share in message.shares) or (
            len(set(recipients)) != len(recipients) or set(recipients) != self._graph[sender]
        ):
            raise InvalidInput(
                f"`share_keys.shares` of {sender!r} must hold one share from it per neighbour.",
                field="share_keys.shares",
            )
        self._shared[sender] = message

    def share_bundles(self) -> dict[str, ShareBundle]:
        """Close round 1 and return each sharing member's bundle of sealed shares.

        Returns
        -------
        dict of str to ShareBundle
            By recipient; only members that shared get one.

        Raises
        ------
        AggregationError
            If fewer than ``threshold`` members shared.
        Conflict
            If round 1 is not open.
        """
        self._check_stage("share")
        self._require_at_least(len(self._shared), "share_keys")
        inbox: dict[str, list[EncryptedShare]] = {client_id: [] for client_id in self._shared}
        for message in self._shared.values():
            for share in message.shares:
                if share.recipient in inbox:
                    inbox[share.recipient].append(share)
        self._stage = "mask"
        return {r: ShareBundle(recipient=r, shares=tuple(s)) for r, s in sorted(inbox.items())}

    def handle_masked_input(self, message: MaskedInput) -> None:
        """Round 2: record a member's masked input.

        Parameters
        ----------
        message : MaskedInput

        Raises
        ------
        InvalidInput
            If the sender did not share keys or sent twice, or the vector is malformed.
        Conflict
            If round 2 is not open.
        """
        self._check_stage("mask")
        sender = self._known(message.client_id, "masked_input.client_id")
        if sender not in self._shared:
            raise InvalidInput(
                f"`masked_input.client_id` {sender!r} did not share keys in round 1.",
                field="masked_input.client_id",
            )
        if sender in self._masked:
            raise InvalidInput(
                f"`masked_input.client_id` {sender!r} sent twice.", field="masked_input.client_id"
            )
        vector = self.config.codec.validate(message.vector, field="masked_input.vector")
        if vector.size != self.config.vector_length:
            raise InvalidInput(
                f"`masked_input.vector` must hold {self.config.vector_length} values; "
                f"got {vector.size}.",
                field="masked_input.vector",
                value=vector.size,
            )
        self._masked[sender] = vector.copy()

    def unmask_request(self) -> UnmaskRequest:
        """Close round 2 and return the request to send to every survivor.

        Returns
        -------
        UnmaskRequest

        Raises
        ------
        AggregationError
            If fewer than ``threshold`` masked inputs arrived.
        Conflict
            If round 2 is not open.
        """
        self._check_stage("mask")
        self._require_at_least(len(self._masked), "masked_input")
        self._request = UnmaskRequest(
            survivors=tuple(sorted(self._masked)),
            dropped=tuple(sorted(set(self._shared) - set(self._masked))),
        )
        self._stage = "unmask"
        return self._request

    def handle_unmask(self, message: UnmaskResponse) -> None:
        """Round 3: record a survivor's opened shares.

        Parameters
        ----------
        message : UnmaskResponse

        Raises
        ------
        InvalidInput
            If the sender is not a survivor or answered twice, or it offers a seed share
            of a non-survivor, a key share of a non-dropped client, a share of a client
            that is not its neighbour, or a share of the wrong length.
        Conflict
            If round 3 is not open.
        """
        self._check_stage("unmask")
        request = self._require_request()
        sender = self._known(message.client_id, "unmask.client_id")
        if sender not in self._masked or sender in self._responders:
            raise InvalidInput(
                f"`unmask.client_id` {sender!r} is not a survivor or answered twice.",
                field="unmask.client_id",
            )
        allowed = self._graph[sender] | {sender}
        for name, shares, owners in (
            ("self_mask_shares", message.self_mask_shares, set(request.survivors)),
            ("key_shares", message.key_shares, set(request.dropped)),
        ):
            for owner, share in shares.items():
                if owner not in owners or owner not in allowed:
                    raise InvalidInput(
                        f"`unmask.{name}` offers a share of {owner!r}, which was not asked for.",
                        field=f"unmask.{name}",
                        value=owner,
                    )
                if not isinstance(share, bytes) or len(share) != SHARE_BYTES:
                    raise InvalidInput(
                        f"`unmask.{name}[{owner}]` must be {SHARE_BYTES} bytes.",
                        field=f"unmask.{name}",
                    )
        x = self._index[sender]
        for owner, share in message.self_mask_shares.items():
            self.self_mask_shares.setdefault(owner, {})[x] = share
        for owner, share in message.key_shares.items():
            self.key_shares.setdefault(owner, {})[x] = share
        self._responders.add(sender)

    def aggregate(self) -> AggregateResult:
        """Close round 3: remove every mask and return the sum of the survivors' inputs.

        Returns
        -------
        AggregateResult

        Raises
        ------
        AggregationError
            If a seed or key has fewer than ``threshold`` shares, or its shares are
            inconsistent or do not match the advertised key.
        Conflict
            If round 3 is not open.
        """
        self._check_stage("unmask")
        request = self._require_request()
        codec, length = self.config.codec, self.config.vector_length
        total = np.zeros(length, dtype=np.uint64)
        for survivor in request.survivors:
            total = codec.add(total, self._masked[survivor])
            seed = self._reconstruct(survivor, self.self_mask_shares, "self_mask_shares")
            total = codec.sub(total, expand_seed(seed, length, bits=codec.bits))
        survivors = set(request.survivors)
        for gone in request.dropped:
            secret = self._reconstruct(gone, self.key_shares, "key_shares")
            mask_key = keys.load_private_key(secret, field=f"unmask.key_shares[{gone}]")
            if keys.public_bytes(mask_key) != self._advertised[gone].mask_public_key:
                raise AggregationError(
                    f"The reconstructed mask key of {gone!r} does not match its public key.",
                    field=f"unmask.key_shares[{gone}]",
                    hint="A survivor sent a forged share.",
                )
            for peer in sorted(self._graph[gone] & survivors):
                public = keys.load_public_key(self._advertised[peer].mask_public_key, field="peer")
                pair_seed = keys.derive_shared_key(
                    mask_key, public, info=keys.MASK_SEED_INFO, salt=self.session.encode()
                )
                mask = expand_seed(pair_seed, length, bits=codec.bits)
                # The survivor added the mask towards a larger index and subtracted it otherwise.
                if self._index[gone] > self._index[peer]:
                    total = codec.sub(total, mask)
                else:
                    total = codec.add(total, mask)
        self._stage = "done"
        return AggregateResult(
            total=codec.decode_sum(total, num_summands=len(request.survivors)),
            survivors=request.survivors,
            dropped=request.dropped,
        )

    def _reconstruct(self, owner: str, store: dict[str, dict[int, bytes]], name: str) -> bytes:
        """Reconstruct one 32-byte secret of ``owner`` from the opened shares."""
        shares = store.get(owner, {})
        if len(shares) < self.config.threshold:
            raise AggregationError(
                f"`unmask.{name}` holds {len(shares)} shares of {owner!r}; the threshold is "
                f"{self.config.threshold}.",
                field=f"unmask.{name}",
                value=len(shares),
                hint="Too many survivors dropped out before unmasking; abort the round.",
            )
        try:
            return reconstruct_secret(
                shares, threshold=self.config.threshold, size_bytes=SEED_BYTES
            )
        except InvalidInput as err:
            raise AggregationError(
                f"The shares of {owner!r} in `unmask.{name}` are inconsistent.",
                field=f"unmask.{name}",
                hint="A survivor sent a forged share.",
            ) from err

    def _require_request(self) -> UnmaskRequest:
        """Return the request of round 3 (set when the round opened)."""
        if self._request is None:
            raise Conflict("No unmask request yet.", field="stage")
        return self._request

    def _check_stage(self, expected: str) -> None:
        """Refuse a call made in any stage but ``expected``."""
        if self._stage != expected:
            raise Conflict(
                f"The secure-aggregation server is at stage {self._stage!r}; this step needs "
                f"stage {expected!r}.",
                field="stage",
                value=self._stage,
                hint="Use a fresh SecAggServer for each round.",
            )

    def _known(self, client_id: str, field: str) -> str:
        """Return ``client_id`` if it is in the roster, else refuse."""
        if client_id not in self._index:
            raise InvalidInput(
                f"`{field}` {client_id!r} is not in the roster.", field=field, value=client_id
            )
        return client_id

    def _require_at_least(self, count: int, step: str) -> None:
        """Refuse to close a round with fewer than ``threshold`` participants."""
        if count < self.config.threshold:
            raise AggregationError(
                f"Only {count} clients completed `{step}`; the threshold is "
                f"{self.config.threshold}.",
                field=step,
                value=count,
                hint="Too many clients dropped out; abort the round.",
            )
