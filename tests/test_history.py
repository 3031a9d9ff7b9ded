"""WiringHistory's stored form: the first snapshot, then the edges each snapshot added and removed."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from neuralgraphs.analysis.history import Snapshots, WiringHistory


def _history(records):
    hist = WiringHistory()
    hist.load_state_dict({"steps": list(range(len(records))), "labels": [f"r{i}" for i in range(len(records))],
                          "records": records})
    return hist


def test_changes_are_stored_and_rebuilt_by_hand():
    a = [{"g": torch.tensor([1, 4, 7]), "h": torch.tensor([0, 2])},
         {"g": torch.tensor([1, 5, 7]), "h": torch.tensor([0, 2])},     # g: 4 -> 5
         {"g": torch.tensor([0, 5, 9]), "h": torch.tensor([2, 3])}]     # g: 1, 7 -> 0, 9; h: 0 -> 3
    state = _history(a).state_dict()
    assert state["modules"] == ["g", "h"]
    assert state["first"]["g"].tolist() == [1, 4, 7] and state["first"]["g"].dtype == torch.int32
    assert [d["g"].tolist() for d in state["added"]] == [[5], [0, 9]]
    assert [d["g"].tolist() for d in state["removed"]] == [[4], [1, 7]]
    assert [d["h"].tolist() for d in state["added"]] == [[], [3]]
    # stored: 3 + 2 first indices and twice the 4 swaps, not 5 indices per snapshot
    stored = sum(t.numel() for t in state["first"].values()) + sum(
        t.numel() for d in state["added"] + state["removed"] for t in d.values())
    assert stored == 5 + 2 * 4
    back = WiringHistory()
    back.load_state_dict(state)
    assert back.steps == [0, 1, 2] and back.labels == ["r0", "r1", "r2"]
    for got, want in zip(back.records, a):
        assert all(torch.equal(got[n], want[n]) and got[n].dtype == torch.int64 for n in want)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sets(st.integers(0, 60), min_size=1, max_size=20), min_size=1, max_size=8))
def test_any_sequence_of_snapshots_round_trips(sets):
    records = [{"m": torch.tensor(sorted(s))} for s in sets]
    back = WiringHistory()
    back.load_state_dict(_history(records).state_dict())
    assert [r["m"].tolist() for r in back.records] == [sorted(s) for s in sets]


def test_an_empty_history_round_trips_and_a_cut_state_is_refused():
    empty = WiringHistory()
    again = WiringHistory()
    again.load_state_dict(empty.state_dict())
    assert len(again) == 0
    state = _history([{"g": torch.tensor([1])}, {"g": torch.tensor([2])}]).state_dict()
    state["added"], state["removed"] = [], []
    with pytest.raises(ValueError, match="expected 1 changes for 2 snapshots"):
        WiringHistory().load_state_dict(state)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sets(st.integers(0, 40), min_size=1, max_size=15), min_size=1, max_size=8), st.randoms(),
       st.integers(0, 9))
def test_snapshots_read_back_in_any_order_and_truncate(sets, rng, cut):
    want = [sorted(s) for s in sets]
    store = Snapshots()
    for s in want:
        store.append({"m": torch.tensor(s)})
    assert len(store) == len(want) and [r["m"].tolist() for r in store] == want
    order = list(range(-len(want), len(want)))
    rng.shuffle(order)
    for i in order:  # the cache must not leak one read into the next
        assert store[i]["m"].tolist() == want[i] and store[i]["m"].dtype == torch.int64
    assert [r["m"].tolist() for r in store[1::2]] == want[1::2]
    with pytest.raises(IndexError):
        store[len(want)]
    # only the changes are kept: the first set, then what each set added and removed
    kept = len(want[0]) + sum(len(set(b) ^ set(a)) for a, b in zip(want, want[1:]))
    assert sum(t.numel() for t in store.first.values()) + sum(
        t.numel() for d in store.added + store.removed for t in d.values()) == kept
    store.truncate(cut)
    assert [r["m"].tolist() for r in store] == want[:cut]
    store.append({"m": torch.tensor([3, 1 + 40])})
    assert [r["m"].tolist() for r in store][-1] == [3, 41] and len(store) == min(cut, len(want)) + 1


def test_swaps_between_snapshots_by_hand():
    hist = _history([{"g": torch.tensor([1, 2, 3])}, {"g": torch.tensor([1, 2, 4])},
                     {"g": torch.tensor([1, 2, 3])}, {"g": torch.tensor([5, 6, 7])}])
    assert hist.swaps() == [1, 1, 3]
    # 0 -> 2: the edge 3 left and came back, nothing new; 2 -> 3: all three new
    assert hist.swaps_between([0, 2, 3]) == [0, 3]
    assert hist.swaps_between([1]) == [] and hist.swaps_between([]) == []
    with pytest.raises(ValueError, match="ascending snapshot indices"):
        hist.swaps_between([2, 1])
    with pytest.raises(ValueError, match="ascending snapshot indices"):
        hist.swaps_between([0, 4])
