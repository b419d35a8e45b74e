"""The pure side of peering: the wire format (peers/protocol) and the choice (peers/plan)."""

from __future__ import annotations

import collections

import pytest

from model_agent.peers import plan, protocol

CHUNK = plan.CHUNK


# --- protocol ----------------------------------------------------------------------------


def test_the_token_must_match_exactly_and_be_a_bearer_token():
    token = "s3cret-token-0123456789"
    assert protocol.authorized(f"Bearer {token}", token)
    assert protocol.authorized(f"bearer {token}", token)
    for header in (None, "", token, f"Basic {token}", f"Bearer {token}x", "Bearer ", "Bearer"):
        assert not protocol.authorized(header, token), header
    assert not protocol.authorized("Bearer ", "")  # an empty configured token never matches


def test_a_file_without_an_origin_digest_has_no_identity_and_is_never_shared():
    assert protocol.file_identity(10, "sha256:ab") == "10:sha256:ab"
    assert protocol.file_identity(10, None) is None


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-9", (0, 10)),
        ("bytes=5-5", (5, 6)),
        ("bytes=90-99", (90, 100)),
        ("bytes=90-100", "invalid"),  # past the end
        ("bytes=9-0", "invalid"),
        ("bytes=0-", "invalid"),  # open ranges are never asked by peers
        ("bytes=-10", "invalid"),
        ("bytes=0-9,20-29", "invalid"),
        ("items=0-9", "invalid"),
        (None, "invalid"),
    ],
)
def test_only_one_closed_range_inside_the_file_is_served(header, expected):
    assert protocol.parse_range(header, 100) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("http://10.0.0.5:8090", "http://10.0.0.5:8090"),
        ("https://10.0.0.5:8090/", "https://10.0.0.5:8090"),
        ("http://[fd00::5]:8090", "http://[fd00::5]:8090"),
        ("http://10.0.0.5", None),  # no port
        ("ftp://10.0.0.5:21", None),
        ("http://user:pw@10.0.0.5:8090", None),
        ("http://10.0.0.5:8090/elsewhere", None),
        ("http://10.0.0.5:99999", None),
        ("", None),
        (None, None),
    ],
)
def test_an_advertised_address_written_by_another_node_is_checked(value, expected):
    assert protocol.parse_address(value) == expected


def test_addresses_are_advertised_with_scheme_and_ipv6_brackets():
    assert protocol.address_url("10.0.0.5", 8090, tls=False) == "http://10.0.0.5:8090"
    assert protocol.address_url("fd00::5", 8090, tls=True) == "https://[fd00::5]:8090"


def test_a_holding_survives_a_round_trip_and_malformed_ones_are_refused():
    holding = protocol.Holding(
        "abc",
        "downloading",
        30,
        {"a.bin": protocol.FileHolding("100:sha256:x", 100, ((0, 10), (50, 70)))},
    )
    assert protocol.parse_holding(holding.to_json()) == holding
    good = holding.to_json()
    bad_values = [
        [],
        {**good, "state": "bogus"},
        {**good, "received": -1},
        {**good, "received": True},
        {**good, "files": {"a.bin": {"identity": "x", "size": 10, "ranges": [[0, 11]]}}},
        {**good, "files": {"a.bin": {"identity": "x", "size": 10, "ranges": [[5, 5]]}}},
        {**good, "files": {"a.bin": {"identity": "x", "size": 10, "ranges": [["0", 1]]}}},
        {**good, "files": {"a.bin": {"identity": 3, "size": 10, "ranges": []}}},
        {**good, "files": []},
    ]
    for value in bad_values:
        with pytest.raises(ValueError):
            protocol.parse_holding(value)


def test_urls_quote_the_key_and_the_path():
    assert protocol.file_url("http://h:1", "ns.basemodel.m", "a b/c.bin") == (
        "http://h:1/peer/v1/models/ns.basemodel.m/files/a%20b/c.bin"
    )


# --- plan --------------------------------------------------------------------------------


def test_the_grid_is_absolute_so_every_node_cuts_alike():
    assert plan.grid_split([(0, 2 * CHUNK + 5)]) == [
        (0, CHUNK),
        (CHUNK, 2 * CHUNK),
        (2 * CHUNK, 2 * CHUNK + 5),
    ]
    # A resumed gap that starts mid-chunk stops at the next grid line, not a chunk later.
    assert plan.grid_split([(CHUNK - 10, CHUNK + 10)]) == [(CHUNK - 10, CHUNK), (CHUNK, CHUNK + 10)]
    assert plan.grid_split([]) == []


def test_each_chunk_has_one_owner_and_the_owners_share_the_work():
    nodes = [f"node-{i:03d}" for i in range(8)]
    owners = collections.Counter(plan.owner(f"file\0{i}", nodes) for i in range(800))
    assert set(owners) == set(nodes)
    assert max(owners.values()) < 2 * 800 / len(nodes)
    # Every node computes the same owner, whatever the order it lists the others in.
    assert plan.owner("k", nodes) == plan.owner("k", list(reversed(nodes)))


def test_a_departed_participant_moves_only_its_own_chunks():
    nodes = [f"node-{i}" for i in range(5)]
    before = {i: plan.owner(f"c{i}", nodes) for i in range(500)}
    after = {i: plan.owner(f"c{i}", nodes[:-1]) for i in range(500)}
    moved = [i for i in before if before[i] != after[i]]
    assert moved and all(before[i] == "node-4" for i in moved)


def decide(me: str, holders: dict, participants: set, position: int = 0, end: int = 100):
    return plan.decide(
        me=me,
        chunk_key="f\0id\0" + str(position // CHUNK),
        position=position,
        end=end,
        holders=holders,
        participants=participants,
    )


def test_a_held_range_comes_from_a_peer_up_to_the_end_of_what_it_holds():
    decision = decide("a", {"b": ((0, 40),)}, {"b"})
    assert decision == plan.Decision("peer", 40, "b")
    assert decide("a", {"b": ((0, 400),)}, set()).stop == 100


def test_an_unheld_chunk_is_fetched_from_the_origin_by_its_owner_only():
    participants = {"a", "b", "c"}
    kinds = {me: decide(me, {}, participants - {me}).kind for me in participants}
    assert sorted(kinds.values()) == ["origin", "wait", "wait"]
    assert decide("a", {}, set()).kind == "origin"  # alone: everything from the origin


def test_a_node_never_picks_itself_and_fetchers_spread_over_holders():
    holders = {f"h{i}": ((0, 100),) for i in range(4)}
    assert decide("h0", {"h0": ((0, 100),)}, set()).kind == "origin"
    picked = collections.Counter(decide(f"fetcher-{i}", holders, set()).source for i in range(200))
    assert set(picked) == set(holders)


def test_a_peer_that_does_not_hold_the_position_is_not_a_holder():
    assert decide("a", {"b": ((50, 100),)}, {"b"}, position=10).kind in ("origin", "wait")
    assert plan.run_end(((0, 10), (20, 30)), 25) == 30
    assert plan.run_end(((0, 10), (20, 30)), 15) is None


# --- router: when a peer is dropped ---------------------------------------------------------


def _router_with_peer():
    from model_agent import errors
    from model_agent.peers import discovery, router

    async def nobody() -> list:
        return []

    peers = router.Router(me="a", key="k", revision="r", candidates=nobody, token="t" * 16)
    peers.views["b"] = router._View(discovery.Candidate("b", "http://b:1", "Updating"))
    return peers, errors


def test_pieces_that_fail_together_on_one_answer_count_once():
    peers, errors = _router_with_peer()
    refused = errors.ServerError("unexpected status 416 fetching w")
    for _ in range(5):  # five parallel pieces refused in the same poll round
        peers.failed("b", refused)
    assert not peers.views["b"].dropped
    peers._round += 1
    peers.failed("b", refused)
    peers._round += 1
    peers.failed("b", refused)
    assert peers.views["b"].dropped  # three rounds in a row


def test_a_success_between_failures_keeps_the_peer_and_a_token_refusal_drops_it_at_once():
    peers, errors = _router_with_peer()
    for _ in range(6):
        peers._round += 1
        peers.failed("b", errors.NetworkError("reset"))
        peers.succeeded("b")
    assert not peers.views["b"].dropped
    peers.failed("b", errors.AuthError("access denied (401)"))
    assert peers.views["b"].dropped


def test_blame_drops_every_contributor_of_the_bad_file_and_only_them():
    peers, _ = _router_with_peer()
    from model_agent.peers import discovery, router

    peers.views["c"] = router._View(discovery.Candidate("c", "http://c:1", "Ready"))
    peers.contributed("w.bin", "b")
    assert peers.blame("w.bin") is True
    assert peers.views["b"].dropped and not peers.views["c"].dropped
    assert peers.blame("w.bin") is False  # nobody left to blame: a plain retry


def _listed_router(me: str, names: list[str]):
    from model_agent.peers import discovery, router

    async def nobody() -> list:
        return []

    peers = router.Router(me=me, key="k", revision="r", candidates=nobody, token="t" * 16)
    peers.listed = {
        n: discovery.Candidate(n, f"http://{n}:1", "Updating") for n in names if n != me
    }
    return peers


def _file(size: int):
    from model_agent import checksums
    from model_agent.storage import base

    digest = checksums.Checksum("sha256", "ab" * 32)
    return base.RemoteFile(path="w.bin", size=size, identity="x", key="w.bin", digests=(digest,))


def test_nodes_that_poll_different_peers_still_agree_on_every_chunk_owner():
    nodes = [f"node-{i:03d}" for i in range(40)]
    file = _file(64 * CHUNK)
    origin_fetchers = collections.Counter()
    for me in nodes:
        peers = _listed_router(me, nodes)
        for chunk in range(64):
            position = chunk * CHUNK
            if peers.decide(file, position, position + CHUNK).kind == "origin":
                origin_fetchers[chunk] += 1
    # Each chunk is fetched from the origin by exactly one of the 40 nodes.
    assert origin_fetchers == dict.fromkeys(range(64), 1)


def test_a_node_polls_the_owner_it_waits_for_and_fetches_itself_when_it_cannot():
    from model_agent.peers import router

    nodes = [f"node-{i:03d}" for i in range(200)]
    key = "w.bin\x00" + f"{CHUNK}:sha256:{'ab' * 32}" + "\x00" + "0"
    owner = plan.owner(key, nodes)
    me = next(n for n in nodes if n != owner)
    peers = _listed_router(me, nodes)
    assert peers.decide(_file(CHUNK), 0, CHUNK).kind == "wait"
    assert list(peers.views) == [owner]  # watched from the next poll round on
    assert peers.decide(_file(CHUNK), 0, CHUNK).kind == "wait"  # not answered yet: still owner
    full = _listed_router(me, nodes)
    for name in [n for n in nodes if n != me][: router.MAX_PEERS + router.MAX_OWNERS]:
        full.views[name] = router._View(full.listed[name], polled=True)  # none answered
    kinds = {full.decide(_file(CHUNK * 8), c * CHUNK, (c + 1) * CHUNK).kind for c in range(8)}
    assert kinds == {"origin"}  # nobody it can watch owns a chunk: it fetches them itself


def test_a_file_without_an_origin_digest_or_under_a_mebibyte_comes_from_the_origin():
    from model_agent.peers import router
    from model_agent.storage import base

    peers = _listed_router("a", ["a", "b"])
    large = _file(4 * CHUNK)
    undigested = base.RemoteFile(path="w.bin", size=4 * CHUNK, identity="x", key="w.bin")
    small = _file(router.SMALL_FILE - 1)
    assert peers.shares(large)
    assert not peers.shares(undigested) and not peers.shares(small)
    everything = protocol.Holding(
        "r",
        "ready",
        4 * CHUNK,
        {"w.bin": protocol.FileHolding(peers.identity(large) or "", 4 * CHUNK, ((0, 4 * CHUNK),))},
    )
    peers.views["b"] = router._View(peers.listed["b"], holding=everything, polled=True)
    assert peers.decide(large, 0, CHUNK).kind == "peer"
    assert peers.decide(undigested, 0, CHUNK).kind == "origin"
