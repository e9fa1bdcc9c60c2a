"""Work planned for later: each key due at the earliest time planned, taken in order."""

import threading
import time

from fluxlora_operator.due import DueQueue


def test_keys_come_due_in_order_at_their_earliest_time():
    due = DueQueue()
    due.plan_in("late", 0.3)
    due.plan_in("soon", 0.1)
    due.plan_in("late", 0.2)  # sooner than planned: the sooner time wins
    due.plan_in("soon", 5)  # later than planned: ignored
    assert due.take(0.01) is None  # nothing due yet
    began = time.monotonic()
    assert due.take(2) == "soon"
    assert due.take(2) == "late"
    assert 0.15 <= time.monotonic() - began < 1
    assert due.take(0.05) is None  # each is taken once


def test_a_key_planned_while_waiting_wakes_the_taker_and_wake_stops_it():
    due = DueQueue()
    taken = []
    taker = threading.Thread(target=lambda: taken.append(due.take(5)))
    taker.start()
    due.plan_in("now", 0)
    taker.join(timeout=2)
    assert taken == ["now"]
    began = time.monotonic()
    stopper = threading.Timer(0.1, due.wake)
    stopper.start()
    assert due.take(5) is None and time.monotonic() - began < 1
