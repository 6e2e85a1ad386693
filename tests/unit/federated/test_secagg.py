"""Secure aggregation: fixed point, Shamir sharing, masks and the four-round protocol."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray
from scipy import stats

from fedloop.core import AggregationError, Conflict, InvalidInput
from fedloop.federated.secagg import (
    AggregateResult,
    FixedPointCodec,
    SecAggClient,
    SecAggConfig,
    SecAggServer,
    ShareBundle,
    UnmaskRequest,
    UnmaskResponse,
    keys,
)
from fedloop.federated.secagg.masks import expand_seed
from fedloop.federated.secagg.shamir import reconstruct_secret, split_secret

LENGTH = 4000
FLOATS = st.floats(-2000.0, 2000.0, allow_nan=False)


def _quantised_sum(
    codec: FixedPointCodec, inputs: list[NDArray[np.float64]]
) -> NDArray[np.float64]:
    """Return the exact sum of the codec's quantised inputs, in float64."""
    ints = [
        np.rint(np.clip(x, -codec.clip, codec.clip) * codec.scale).astype(np.int64) for x in inputs
    ]
    return np.sum(ints, axis=0).astype(np.float64) / codec.scale


def _run_round(
    num_clients: int,
    *,
    drop: int = 0,
    neighbours: int | None = None,
    threshold: int | None = None,
    codec: FixedPointCodec | None = None,
) -> tuple[AggregateResult, list[NDArray[np.float64]], SecAggServer]:
    """Run one round in process; the last ``drop`` clients drop out after sharing keys."""
    config = SecAggConfig(
        threshold=threshold or num_clients // 2 + 1,
        vector_length=LENGTH,
        codec=codec or FixedPointCodec(),
        neighbours=neighbours,
    )
    server = SecAggServer("round-7", config)
    clients = [SecAggClient(f"site-{i:02d}") for i in range(num_clients)]
    rng = np.random.default_rng(num_clients)
    inputs = [rng.normal(0.0, 0.1, LENGTH) for _ in clients]
    for client in clients:
        server.handle_advertise(client.advertise())
    roster = server.roster()
    for client in clients:
        server.handle_share_keys(client.share(roster))
    bundles = server.share_bundles()
    survivors = clients[: num_clients - drop]
    for client, values in zip(survivors, inputs, strict=False):
        server.handle_masked_input(client.masked_input(bundles[client.client_id], values))
    request = server.unmask_request()
    for client in survivors:
        server.handle_unmask(client.unmask(request))
    return server.aggregate(), inputs[: len(survivors)], server


def _masked_round(
    num_clients: int = 3,
) -> tuple[SecAggServer, list[SecAggClient], dict[str, ShareBundle]]:
    """Advance a round of ``num_clients`` to the point where inputs are due."""
    server = SecAggServer("round-1", SecAggConfig(threshold=2, vector_length=4))
    clients = [SecAggClient(name) for name in "abcdefgh"[:num_clients]]
    for client in clients:
        server.handle_advertise(client.advertise())
    roster = server.roster()
    for client in clients:
        server.handle_share_keys(client.share(roster))
    return server, clients, server.share_bundles()


@settings(max_examples=50, deadline=None)
@given(st.lists(FLOATS, min_size=1, max_size=50))
def test_fixed_point_round_trip_within_half_a_step(values: list[float]) -> None:
    """Decoding one encoding returns each clipped value within half a quantisation step."""
    # Arrange
    codec = FixedPointCodec(bits=32, scale=2.0**16, clip=1000.0)

    # Act
    decoded = codec.decode_sum(codec.encode(values), num_summands=1)

    # Assert
    expected = np.clip(values, -codec.clip, codec.clip)
    assert np.all(np.abs(decoded - expected) <= 0.5 / codec.scale)


@settings(max_examples=50, deadline=None)
@given(
    st.integers(8, 64), st.lists(st.lists(FLOATS, min_size=5, max_size=5), min_size=1, max_size=8)
)
def test_fixed_point_sum_is_exact(bits: int, rows: list[list[float]]) -> None:
    """The ring sum of n encodings decodes to exactly the sum of the quantised values."""
    # Arrange
    codec = FixedPointCodec(bits=bits, scale=1.0, clip=float(2 ** (bits - 5)))
    inputs = [np.array(row) for row in rows]
    total = np.zeros(5, dtype=np.uint64)

    # Act
    for values in inputs:
        total = codec.add(total, codec.encode(values))

    # Assert
    assert np.array_equal(
        codec.decode_sum(total, num_summands=len(rows)), _quantised_sum(codec, inputs)
    )


def test_fixed_point_refuses_sums_that_could_wrap() -> None:
    """decode_sum refuses more summands than the ring can hold without wrapping."""
    # Arrange
    codec = FixedPointCodec(bits=16, scale=1.0, clip=100.0)

    # Act / Assert
    with pytest.raises(InvalidInput, match=r"num_summands") as info:
        codec.decode_sum(np.zeros(3, dtype=np.uint64), num_summands=codec.max_summands + 1)
    assert info.value.field == "num_summands"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        pytest.param({"bits": 65}, "codec.bits", id="bits"),
        pytest.param({"scale": 0.0}, "codec.scale", id="scale"),
        pytest.param({"bits": 8, "scale": 1e6}, "codec.scale", id="no-room"),
    ],
)
def test_fixed_point_codec_refuses_bad_parameters(kwargs: dict[str, float], field: str) -> None:
    """The codec refuses parameters out of range, naming the field."""
    # Act / Assert
    with pytest.raises(InvalidInput) as info:
        FixedPointCodec(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


def test_fixed_point_refuses_non_finite_values() -> None:
    """Encode refuses NaN."""
    # Act / Assert
    with pytest.raises(InvalidInput, match=r"values"):
        FixedPointCodec().encode([1.0, float("nan")])


@settings(max_examples=30, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.integers(2, 9), st.data())
def test_shamir_any_threshold_subset_reconstructs(
    secret: bytes, num_shares: int, data: st.DataObject
) -> None:
    """Any t of n shares reconstruct the secret."""
    # Arrange
    threshold = data.draw(st.integers(1, num_shares))
    shares = split_secret(secret, list(range(1, num_shares + 1)), threshold=threshold)
    chosen = data.draw(st.lists(st.sampled_from(sorted(shares)), min_size=threshold, unique=True))

    # Act
    recovered = reconstruct_secret(
        {x: shares[x] for x in chosen}, threshold=threshold, size_bytes=32
    )

    # Assert
    assert recovered == secret


def test_shamir_refuses_fewer_than_threshold_shares() -> None:
    """T - 1 shares are refused."""
    # Arrange
    shares = split_secret(bytes(range(32)), [1, 2, 3, 4, 5], threshold=3)

    # Act / Assert
    with pytest.raises(InvalidInput, match=r"at least 3") as info:
        reconstruct_secret({1: shares[1], 4: shares[4]}, threshold=3, size_bytes=32)
    assert info.value.field == "shares"


def test_shamir_detects_a_forged_share_beyond_the_threshold() -> None:
    """A share off the polynomial is detected when more than t shares are given."""
    # Arrange
    shares = split_secret(bytes(32), [1, 2, 3, 4], threshold=2)
    shares[4] = (int.from_bytes(shares[4], "big") ^ 1).to_bytes(66, "big")

    # Act / Assert
    with pytest.raises(InvalidInput, match=r"inconsistent"):
        reconstruct_secret(shares, threshold=2, size_bytes=32)


@pytest.mark.parametrize(
    ("xs", "threshold", "field"),
    [
        pytest.param([1, 1, 2], 2, "xs", id="repeated-x"),
        pytest.param([0, 1], 2, "xs", id="x-zero"),
        pytest.param([1, 2], 3, "threshold", id="threshold-above-n"),
    ],
)
def test_shamir_split_refuses_bad_input(xs: list[int], threshold: int, field: str) -> None:
    """split_secret refuses repeated or zero x-coordinates and an impossible threshold."""
    # Act / Assert
    with pytest.raises(InvalidInput) as info:
        split_secret(bytes(32), xs, threshold=threshold)
    assert info.value.field == field


def test_pairwise_masks_cancel() -> None:
    """Both ends of a pair derive the same seed, so +mask and -mask cancel in the ring."""
    # Arrange
    alice, bob = keys.generate_private_key(), keys.generate_private_key()
    codec = FixedPointCodec()
    values = codec.encode(np.linspace(-1.0, 1.0, 100))

    # Act
    seed_a = keys.derive_shared_key(alice, bob.public_key(), info=keys.MASK_SEED_INFO, salt=b"r")
    seed_b = keys.derive_shared_key(bob, alice.public_key(), info=keys.MASK_SEED_INFO, salt=b"r")
    masked = codec.add(values, expand_seed(seed_a, 100, bits=64))
    unmasked = codec.sub(masked, expand_seed(seed_b, 100, bits=64))

    # Assert
    assert seed_a == seed_b
    assert np.array_equal(unmasked, values)


def test_expand_seed_refuses_a_short_seed() -> None:
    """expand_seed refuses a seed that is not 32 bytes."""
    # Act / Assert
    with pytest.raises(InvalidInput, match=r"seed"):
        expand_seed(bytes(31), 10, bits=32)


@pytest.mark.parametrize("num_clients", [pytest.param(n, id=f"n{n}") for n in (5, 7, 10)])
@pytest.mark.parametrize("drop", [pytest.param(d, id=f"drop{d}") for d in (0, 1, 2)])
def test_secagg_sum_is_exact_with_dropouts(num_clients: int, drop: int) -> None:
    """The server outputs exactly the sum of the survivors' quantised inputs."""
    # Act
    result, inputs, _ = _run_round(num_clients, drop=drop)

    # Assert
    assert len(result.survivors) == num_clients - drop
    assert len(result.dropped) == drop
    assert np.array_equal(result.total, _quantised_sum(FixedPointCodec(), inputs))


@pytest.mark.parametrize("drop", [pytest.param(d, id=f"drop{d}") for d in (0, 2)])
def test_secagg_plus_sum_is_exact_with_dropouts(drop: int) -> None:
    """With SecAgg+ neighbourhoods of 6 out of 10 clients (threshold 4) the sum is exact."""
    # Arrange
    codec = FixedPointCodec(bits=32, scale=2.0**12, clip=64.0)

    # Act
    result, inputs, _ = _run_round(10, drop=drop, neighbours=6, threshold=4, codec=codec)

    # Assert
    assert np.array_equal(result.total, _quantised_sum(codec, inputs))


def test_server_view_of_one_input_is_uniform_and_uncorrelated() -> None:
    """A masked input looks uniform mod 2**k and does not correlate with the input."""
    # Arrange
    server = SecAggServer("round-9", SecAggConfig(threshold=2, vector_length=LENGTH))
    clients = [SecAggClient(name) for name in "abc"]
    for client in clients:
        server.handle_advertise(client.advertise())
    roster = server.roster()
    for client in clients:
        server.handle_share_keys(client.share(roster))
    bundles = server.share_bundles()
    values = np.sin(np.arange(LENGTH) / 50.0)  # a strongly structured update

    # Act
    masked = clients[0].masked_input(bundles["a"], values).vector

    # Assert
    uniform01 = masked.astype(np.float64) / 2.0**64
    assert stats.kstest(uniform01, "uniform").pvalue > 1e-3
    assert abs(stats.pearsonr(uniform01, values).statistic) < 0.1
    assert not np.array_equal(masked, FixedPointCodec().encode(values))


def test_server_never_holds_both_secrets_of_one_client() -> None:
    """The server gets seed shares of survivors only and key shares of dropped clients only."""
    # Act
    result, _, server = _run_round(7, drop=2)

    # Assert
    assert set(server.self_mask_shares) == set(result.survivors)
    assert set(server.key_shares) == set(result.dropped)


def test_client_refuses_to_reveal_both_secrets_of_one_client() -> None:
    """A client refuses a request listing a client as both survivor and dropped."""
    # Arrange
    server, clients, bundles = _masked_round()
    for client in clients:
        server.handle_masked_input(client.masked_input(bundles[client.client_id], np.ones(4)))
    request = UnmaskRequest(survivors=("a", "b", "c"), dropped=("c",))

    # Act / Assert
    with pytest.raises(InvalidInput) as info:
        clients[0].unmask(request)
    assert info.value.field == "unmask_request.dropped"


def test_client_answers_one_unmask_request_only() -> None:
    """A second unmask request (say, with c now dropped) is refused."""
    # Arrange
    server, clients, bundles = _masked_round()
    for client in clients:
        server.handle_masked_input(client.masked_input(bundles[client.client_id], np.ones(4)))
    clients[0].unmask(server.unmask_request())

    # Act / Assert
    with pytest.raises(Conflict, match=r"stage"):
        clients[0].unmask(UnmaskRequest(survivors=("a", "b"), dropped=("c",)))


def test_server_refuses_a_key_share_of_a_survivor() -> None:
    """The server refuses an unmask response that offers a survivor's key share."""
    # Arrange
    server, clients, bundles = _masked_round()
    for client in clients:
        server.handle_masked_input(client.masked_input(bundles[client.client_id], np.ones(4)))
    response = clients[0].unmask(server.unmask_request())
    forged = UnmaskResponse("a", response.self_mask_shares, {"b": bytes(66)})

    # Act / Assert
    with pytest.raises(InvalidInput) as info:
        server.handle_unmask(forged)
    assert info.value.field == "unmask.key_shares"


def test_server_refuses_too_few_survivors() -> None:
    """Closing round 2 with fewer inputs than the threshold is refused."""
    # Arrange
    server, clients, bundles = _masked_round()
    server.handle_masked_input(clients[0].masked_input(bundles["a"], np.ones(4)))

    # Act / Assert
    with pytest.raises(AggregationError) as info:
        server.unmask_request()
    assert info.value.field == "masked_input"


def test_server_refuses_too_few_unmask_responses() -> None:
    """Aggregate refuses when a seed has fewer shares than the threshold."""
    # Arrange
    server, clients, bundles = _masked_round()
    for client in clients[:2]:
        server.handle_masked_input(client.masked_input(bundles[client.client_id], np.ones(4)))
    server.handle_unmask(clients[0].unmask(server.unmask_request()))

    # Act / Assert
    with pytest.raises(AggregationError, match=r"threshold") as info:
        server.aggregate()
    assert info.value.field == "unmask.self_mask_shares"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        pytest.param({"client_id": "zz"}, "masked_input.client_id", id="unknown-id"),
        pytest.param(
            {"vector": np.zeros(3, dtype=np.uint64)}, "masked_input.vector", id="wrong-length"
        ),
        pytest.param(
            {"vector": np.zeros(4, dtype=np.float64)}, "masked_input.vector", id="wrong-dtype"
        ),
    ],
)
def test_server_refuses_malformed_masked_input(change: dict[str, object], field: str) -> None:
    """Masked inputs from strangers or of the wrong shape or dtype are refused."""
    # Arrange
    server, clients, bundles = _masked_round()
    message = replace(clients[0].masked_input(bundles["a"], np.ones(4)), **change)  # type: ignore[arg-type]

    # Act / Assert
    with pytest.raises(InvalidInput) as info:
        server.handle_masked_input(message)
    assert info.value.field == field


def test_server_refuses_a_duplicate_masked_input() -> None:
    """A second masked input from the same client is refused."""
    # Arrange
    server, clients, bundles = _masked_round()
    message = clients[0].masked_input(bundles["a"], np.ones(4))
    server.handle_masked_input(message)

    # Act / Assert
    with pytest.raises(InvalidInput, match=r"twice"):
        server.handle_masked_input(message)


def test_server_refuses_a_duplicate_advertisement() -> None:
    """A client id advertised twice is refused."""
    # Arrange
    server = SecAggServer("r", SecAggConfig(threshold=2, vector_length=4))
    client = SecAggClient("a")
    message = client.advertise()
    server.handle_advertise(message)

    # Act / Assert
    with pytest.raises(InvalidInput) as info:
        server.handle_advertise(message)
    assert info.value.field == "advertise.client_id"


def test_client_refuses_a_tampered_share() -> None:
    """A share whose ciphertext was altered does not decrypt and is refused."""
    # Arrange
    _, clients, bundles = _masked_round()
    bundle = bundles["a"]
    first = bundle.shares[0]
    tampered = replace(first, ciphertext=bytes([first.ciphertext[0] ^ 1]) + first.ciphertext[1:])
    bad = ShareBundle("a", (tampered, *bundle.shares[1:]))

    # Act / Assert
    with pytest.raises(InvalidInput, match=r"decrypt") as info:
        clients[0].masked_input(bad, np.ones(4))
    assert info.value.field == f"share_bundle.shares[{first.sender}]"


def test_client_refuses_a_roster_without_it() -> None:
    """A client refuses a roster that does not carry its own keys."""
    # Arrange
    server = SecAggServer("r", SecAggConfig(threshold=2, vector_length=4))
    outsider = SecAggClient("z")
    outsider.advertise()
    for name in "ab":
        server.handle_advertise(SecAggClient(name).advertise())

    # Act / Assert
    with pytest.raises(InvalidInput) as info:
        outsider.share(server.roster())
    assert info.value.field == "roster.members"


def test_secagg_config_refuses_a_threshold_below_two() -> None:
    """A threshold of 1 is refused."""
    # Act / Assert
    with pytest.raises(InvalidInput) as info:
        SecAggConfig(threshold=1, vector_length=4)
    assert info.value.field == "secagg.threshold"
