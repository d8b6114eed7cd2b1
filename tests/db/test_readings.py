"""A reader's own points, saved one at a time as the app saves them."""

from __future__ import annotations

import math

import pytest

from scn_annotator.errors import ScnError


def test_a_readers_point_is_placed_moved_and_marked_absent(loaded):
    loaded.readings.set("hand001", 2, 10.0, 20.0)  # this user's own reading
    loaded.readings.set("hand001", 2, 11.5, 21.0)
    loaded.readings.set("hand001", 3, None, None, state="absent", reader="other")
    tables = loaded.readings.tables()
    me = (
        "tester" if loaded.db.is_sqlite else loaded.db.url.username
    )  # SQLite: the user's name; PostgreSQL: the role that connects
    assert sorted(tables) == sorted(["other", me])
    assert tuple(tables[me].points["hand001"][2]) == (11.5, 21.0)
    assert tables["other"].extra["hand001"]["state"][3] == "absent"
    assert math.isnan(tables["other"].points["hand001"][3, 0])
    with pytest.raises(ScnError, match="outside image"):
        loaded.readings.set("hand001", 2, -5.0, 20.0)
    with pytest.raises(ScnError, match="absent landmark has no position"):
        loaded.readings.set("hand001", 2, 1.0, 2.0, state="absent")
    assert loaded.annotations.of("hand001") == {}  # readings never touch the consensus
