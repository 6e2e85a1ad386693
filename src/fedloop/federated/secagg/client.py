"""The client side of secure aggregation: a transport-free state machine."""

from __future__ import annotations

import os

from numpy.typing import ArrayLike

from fedloop.core import AggregationError, Conflict, InvalidInput
from fedloop.federated.secagg import keys
from fedloop.federated.secagg._graph import neighbour_sets
from fedloop.federated.secagg._sealing import open_share, seal_share
from fedloop.federated.secagg.masks import SEED_BYTES, expand_seed
from fedloop.federated.secagg.messages import (
    AdvertiseKeys,
    MaskedInput,
    Roster,
    ShareBundle,
    ShareKeys,
    UnmaskRequest,
    UnmaskResponse,
)
from fedloop.federated.secagg.shamir import split_secret

__all__ = ["SecAggClient"]

_STAGES = ("new", "advertised", "shared", "masked", "unmasked")


class SecAggClient:
    """One client's part in one round of secure aggregation (Bonawitz et al., CCS 2017).

    Call `advertise`, `share`, `masked_input` and `unmask` in that order, each with the
    server's previous message; each returns the message for the server. A client is
    good for one round: it answers at most one unmask request, so it never reveals both
    its self-mask seed and its mask key. The server is trusted to follow the protocol
    (honest but curious); the signed consistency round against an active server is
    not implemented.

    Parameters
    ----------
    client_id : str
        This client's id, unique in the round.

    Raises
    ------
    InvalidInput
        If ``client_id`` is empty.

    Examples
    --------
    >>> client = SecAggClient("site-a")
    >>> client.advertise().client_id
    'site-a'
    """

    def __init__(self, client_id: str) -> None:
        if not isinstance(client_id, str) or not client_id:
            raise InvalidInput("`client_id` must be a non-empty str.", field="client_id")
        self.client_id = client_id
        self._stage = "new"
        self._cipher_key = keys.generate_private_key()
        self._mask_key = keys.generate_private_key()
        self._self_mask_seed = os.urandom(SEED_BYTES)
        self._roster: Roster | None = None
        self._index: dict[str, int] = {}
        self._neighbours: frozenset[str] = frozenset()
        # Shares this client holds, by owner: (share of self-mask seed, share of mask key).
        self._held: dict[str, tuple[bytes, bytes]] = {}
        # Share-sealing key per peer (X25519 is symmetric: one key both ways).
        self._boxes: dict[str, bytes] = {}

    def advertise(self) -> AdvertiseKeys:
        """Round 0: publish the two public keys.

        Returns
        -------
        AdvertiseKeys

        Raises
        ------
        Conflict
            If called twice.
        """
        self._enter("new", "advertised")
        return AdvertiseKeys(
            client_id=self.client_id,
            cipher_public_key=keys.public_bytes(self._cipher_key),
            mask_public_key=keys.public_bytes(self._mask_key),
        )

    def share(self, roster: Roster) -> ShareKeys:
        """Round 1: Shamir-share the self-mask seed and mask key among the neighbours.

        Parameters
        ----------
        roster : Roster
            The members and parameters from the server.

        Returns
        -------
        ShareKeys
            One sealed share pair per neighbour; this client keeps its own.

        Raises
        ------
        InvalidInput
            If the roster is malformed, omits this client or misstates its keys.
        AggregationError
            If the roster has fewer members than the threshold.
        Conflict
            If called out of order.
        """
        self._check_stage("advertised")
        self._validate_roster(roster)
        holders = sorted(self._neighbours | {self.client_id}, key=self._index.__getitem__)
        xs = [self._index[member] for member in holders]
        threshold = roster.config.threshold
        seed_shares = split_secret(self._self_mask_seed, xs, threshold=threshold)
        key_shares = split_secret(keys.private_bytes(self._mask_key), xs, threshold=threshold)
        self._roster = roster
        self._held[self.client_id] = (seed_shares[self._own_x], key_shares[self._own_x])
        sealed = []
        for member, x in zip(holders, xs, strict=True):
            if member == self.client_id:
                continue
            peer = keys.load_public_key(self._member(member).cipher_public_key, field="roster")
            box = keys.derive_shared_key(
                self._cipher_key, peer, info=keys.SHARE_KEY_INFO, salt=roster.session.encode()
            )
            self._boxes[member] = box  # the same key opens what this peer seals for us
            sealed.append(
                seal_share(
                    box,
                    session=roster.session,
                    sender=self.client_id,
                    recipient=member,
                    self_mask=seed_shares[x],
                    mask_key=key_shares[x],
                )
            )
        self._stage = "shared"
        return ShareKeys(client_id=self.client_id, shares=tuple(sealed))

    def masked_input(self, bundle: ShareBundle, values: ArrayLike) -> MaskedInput:
        """Round 2: open the shares addressed to this client and send the masked input.

        The input is ``encode(values) + PRG(b) + sum(+-PRG(s_ij))`` mod ``2**bits``, with
        one pairwise mask per neighbour that completed round 1 (``+`` towards a larger
        member index, ``-`` towards a smaller).

        Parameters
        ----------
        bundle : ShareBundle
            The sealed shares from the server.
        values : array_like of float
            The update, ``vector_length`` values once flattened.

        Returns
        -------
        MaskedInput

        Raises
        ------
        InvalidInput
            If a share is misaddressed, repeated, from a non-neighbour or does not decrypt,
            or ``values`` has the wrong length.
        AggregationError
            If fewer than ``threshold`` holders of this client's shares remain.
        Conflict
            If called out of order.
        """
        self._check_stage("shared")
        roster = self._require_roster()
        config = roster.config
        codec = config.codec
        encoded = codec.encode(values)
        if encoded.size != config.vector_length:
            raise InvalidInput(
                f"`values` must hold {config.vector_length} values; got {encoded.size}.",
                field="values",
                value=encoded.size,
            )
        held = self._open_bundle(bundle, roster)
        if len(held) < config.threshold:
            raise AggregationError(
                f"Only {len(held)} holders of this client's shares remain; the threshold "
                f"is {config.threshold}.",
                field="share_bundle.shares",
                value=len(held),
                hint="Too many clients dropped out; abort the round.",
            )
        total = codec.add(encoded, expand_seed(self._self_mask_seed, encoded.size, bits=codec.bits))
        salt = roster.session.encode()
        for peer_id in sorted(set(held) - {self.client_id}):
            peer = keys.load_public_key(self._member(peer_id).mask_public_key, field="roster")
            seed = keys.derive_shared_key(self._mask_key, peer, info=keys.MASK_SEED_INFO, salt=salt)
            mask = expand_seed(seed, encoded.size, bits=codec.bits)
            if self._index[peer_id] > self._own_x:
                total = codec.add(total, mask)
            else:
                total = codec.sub(total, mask)
        self._held = held
        self._stage = "masked"
        return MaskedInput(client_id=self.client_id, vector=total)

    def unmask(self, request: UnmaskRequest) -> UnmaskResponse:
        """Round 3: reveal seed shares of survivors and key shares of dropped clients.

        Parameters
        ----------
        request : UnmaskRequest
            Who survived and who dropped.

        Returns
        -------
        UnmaskResponse

        Raises
        ------
        InvalidInput
            If the request names unknown clients, names a client in both lists, or
            lists this client as dropped.
        AggregationError
            If fewer than ``threshold`` survivors remain.
        Conflict
            If called out of order or a second time.
        """
        self._check_stage("masked")
        roster = self._require_roster()
        survivors, dropped = set(request.survivors), set(request.dropped)
        if len(survivors) != len(request.survivors) or len(dropped) != len(request.dropped):
            raise InvalidInput("`unmask_request` lists a client twice.", field="unmask_request")
        if survivors & dropped:
            raise InvalidInput(
                "`unmask_request` lists a client as both survivor and dropped; revealing "
                "both its self-mask seed and its mask key would expose its input.",
                field="unmask_request.dropped",
                value=sorted(survivors & dropped),
            )
        unknown = (survivors | dropped) - set(self._index)
        if unknown:
            raise InvalidInput(
                "`unmask_request` names clients outside the roster.",
                field="unmask_request",
                value=sorted(unknown),
            )
        if self.client_id not in survivors:
            raise InvalidInput(
                "`unmask_request.survivors` must include the client that is asked.",
                field="unmask_request.survivors",
            )
        if len(survivors) < roster.config.threshold:
            raise AggregationError(
                f"`unmask_request.survivors` has {len(survivors)} clients; the threshold is "
                f"{roster.config.threshold}.",
                field="unmask_request.survivors",
                value=len(survivors),
            )
        self._stage = "unmasked"
        return UnmaskResponse(
            client_id=self.client_id,
            self_mask_shares={o: s[0] for o, s in self._held.items() if o in survivors},
            key_shares={o: s[1] for o, s in self._held.items() if o in dropped},
        )

    @property
    def _own_x(self) -> int:
        """Return the Shamir x-coordinate of this client."""
        return self._index[self.client_id]

    def _enter(self, expected: str, following: str) -> None:
        """Move from ``expected`` to ``following`` or refuse."""
        self._check_stage(expected)
        self._stage = following

    def _check_stage(self, expected: str) -> None:
        """Refuse a call made in any stage but ``expected``."""
        if self._stage != expected:
            step = _STAGES[_STAGES.index(expected) + 1]
            raise Conflict(
                f"Secure-aggregation client {self.client_id!r} is at stage {self._stage!r}; "
                f"the {step!r} step needs stage {expected!r}.",
                field="stage",
                value=self._stage,
                hint="Use a fresh SecAggClient for each round.",
            )

    def _require_roster(self) -> Roster:
        """Return the roster of round 1."""
        if self._roster is None:  # unreachable once the stage check passed
            raise Conflict("No roster yet.", field="stage")
        return self._roster

    def _member(self, client_id: str) -> AdvertiseKeys:
        """Return the roster entry of ``client_id``."""
        return self._require_roster().members[self._index[client_id] - 1]

    def _validate_roster(self, roster: Roster) -> None:
        """Check the roster and record member indices and neighbours."""
        ids = [member.client_id for member in roster.members]
        if ids != sorted(set(ids)):
            raise InvalidInput(
                "`roster.members` must be sorted by client id without repeats.",
                field="roster.members",
            )
        public_keys = [m.cipher_public_key for m in roster.members]
        public_keys += [m.mask_public_key for m in roster.members]
        if len(set(public_keys)) != len(public_keys):
            raise InvalidInput("`roster.members` repeats a public key.", field="roster.members")
        for member in roster.members:
            keys.load_public_key(member.cipher_public_key, field="roster.members.cipher_public_key")
            keys.load_public_key(member.mask_public_key, field="roster.members.mask_public_key")
        index = {client_id: i + 1 for i, client_id in enumerate(ids)}
        mine = roster.members[index[self.client_id] - 1] if self.client_id in index else None
        if mine is None or (
            mine.cipher_public_key != keys.public_bytes(self._cipher_key)
            or mine.mask_public_key != keys.public_bytes(self._mask_key)
        ):
            raise InvalidInput(
                f"`roster.members` does not carry client {self.client_id!r} with its keys.",
                field="roster.members",
            )
        if len(ids) < roster.config.threshold:
            raise AggregationError(
                f"`roster.members` has {len(ids)} clients; the threshold is "
                f"{roster.config.threshold}.",
                field="roster.members",
                value=len(ids),
            )
        self._index = index
        graph = neighbour_sets(ids, degree=roster.config.neighbours, graph_seed=roster.graph_seed)
        self._neighbours = graph[self.client_id]

    def _open_bundle(self, bundle: ShareBundle, roster: Roster) -> dict[str, tuple[bytes, bytes]]:
        """Decrypt every share in ``bundle``; return the held shares by owner, own included."""
        if bundle.recipient != self.client_id:
            raise InvalidInput(
                f"`share_bundle.recipient` is {bundle.recipient!r}, not {self.client_id!r}.",
                field="share_bundle.recipient",
            )
        held = {self.client_id: self._held[self.client_id]}
        salt = roster.session.encode()
        for share in bundle.shares:
            field = f"share_bundle.shares[{share.sender}]"
            if share.sender not in self._neighbours or share.recipient != self.client_id:
                raise InvalidInput(
                    f"`{field}` is not from a neighbour to this client.", field=field
                )
            if share.sender in held:
                raise InvalidInput(f"`{field}` is repeated.", field=field)
            box = self._boxes.get(share.sender)
            if box is None:
                peer = keys.load_public_key(
                    self._member(share.sender).cipher_public_key, field=field
                )
                box = keys.derive_shared_key(
                    self._cipher_key, peer, info=keys.SHARE_KEY_INFO, salt=salt
                )
            held[share.sender] = open_share(box, share, session=roster.session)
        return held
