"""The insider task's resume watermark, alone: what a resume skips and what it may resend."""

from __future__ import annotations

import numpy as np
from helpers import examples
from hypothesis import given, settings
from hypothesis import strategies as st

from arrowbulk.plugins.insider.watermark import Position, Watermark


def rows(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def test_the_watermark_follows_answers_in_any_order() -> None:
    mark = Watermark()
    assert mark.position() == Position(0, 0)
    mark.queued([(1, rows(0, 1, 2)), (2, rows(3, 4))], pending_first=5, queued_through=8)
    mark.going_out(1, rows(0, 1, 2))
    mark.going_out(2, rows(3, 4))
    assert mark.position() == Position(0, 5)  # nothing settled; both requests may have landed
    mark.answered(2)  # the later request answers first: the watermark cannot pass request 1
    assert mark.position() == Position(0, 5)
    mark.answered(1)
    assert mark.position() == Position(5, 0)  # the builder still holds row 5
    mark.queued([], pending_first=None)
    assert mark.position() == Position(8, 0)


def test_rows_of_one_request_need_not_be_contiguous() -> None:
    # Events: a request groups each user's rows, so its rows come in any order.
    mark = Watermark()
    mark.queued([(1, rows(7, 2, 9))], pending_first=None, queued_through=10)
    mark.going_out(1, rows(7, 2, 9))
    assert mark.position() == Position(2, 3)
    mark.answered(1)
    assert mark.position() == Position(10, 0)


def test_untracked_requests_are_not_kept_and_skip_starts_higher() -> None:
    mark = Watermark(tracked=False)
    mark.skip(100)
    mark.queued([(1, rows(100, 101))], pending_first=None, queued_through=102)
    mark.going_out(1, rows(100, 101))
    assert mark.position() == Position(100, 0)  # no resume state: in-doubt rows not counted


@settings(max_examples=examples(200), deadline=None)
@given(st.lists(st.integers(1, 5), min_size=1, max_size=12), st.randoms(use_true_random=False))
def test_never_above_the_lowest_unsettled_row(sizes: list[int], random) -> None:
    """Against a model: settled is the lowest row not yet answered, in_doubt the rows sent
    at or above it; whatever the order requests go out and come back."""
    mark, start, requests = Watermark(), 0, []
    for key, size in enumerate(sizes):
        block = rows(*range(start, start + size))
        random.shuffle(block)
        requests.append((key, block))
        start += size
    mark.queued(requests, pending_first=None, queued_through=start)
    sent: dict[int, np.ndarray] = {}
    answered: set[int] = set()
    events = [("out", k) for k, _ in requests] + [("answer", k) for k, _ in requests]
    random.shuffle(events)
    for kind, key in events:
        if kind == "answer" and key not in sent:
            continue  # a request cannot be answered before it goes out
        if kind == "out" and key not in sent:
            sent[key] = dict(requests)[key]
            mark.going_out(key, sent[key])
        elif kind == "answer":
            answered.add(key)
            mark.answered(key)
        open_rows = [r for k, block in requests if k not in answered for r in block.tolist()]
        settled = min(open_rows, default=start)
        in_doubt = sum(
            int((block >= settled).sum()) for k, block in sent.items() if block.max() >= settled
        )
        assert mark.position() == Position(settled, in_doubt)
