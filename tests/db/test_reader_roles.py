"""On PostgreSQL a reader is the role that connects: the database refuses a reading written in another's name."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from sqlalchemy.engine import make_url

from scn_annotator.app.sample_project import LANDMARK_NAMES
from scn_annotator.db.roles import grant
from scn_annotator.db.store import Project
from scn_annotator.db.transfer import decide_consensus, import_images, import_readings
from scn_annotator.errors import ScnError


@pytest.fixture
def team(postgres_url, sample_dir, tmp_path):
    """A project owned by the administrator, and three login roles: two annotators and a reviewer."""
    owner = Project.create(tmp_path / "owner", LANDMARK_NAMES, database=postgres_url, user="owner")
    import_images(owner, sample_dir / "images")
    tag = uuid.uuid4().hex[:8]
    roles = {name: f"r{tag}_{name}" for name in ("alice", "bob", "carol")}
    for name, role in roles.items():
        grant(owner, role, reviewer=name == "carol", password="pw")
    url = make_url(postgres_url)

    def connect(name: str) -> Project:
        as_role = url.set(username=roles[name], password="pw").render_as_string(hide_password=False)
        return Project.open(as_role, data_dir=tmp_path / name, user="whoever they say they are")

    yield owner, roles, connect
    owner.close()
    with psycopg.connect(postgres_url, autocommit=True) as admin:  # the roles own privileges in this database
        for role in roles.values():
            admin.execute(f'DROP OWNED BY "{role}"')
    with psycopg.connect(url.set(database="postgres").render_as_string(hide_password=False), autocommit=True) as c:
        for role in roles.values():
            c.execute(f'DROP ROLE IF EXISTS "{role}"')


def test_a_role_writes_its_own_reading_and_is_refused_anothers(team, sample_dir):
    owner, roles, connect = team
    alice, bob, carol = connect("alice"), connect("bob"), connect("carol")
    labels = sample_dir / "labels.csv"
    assert import_readings(alice, labels, roles["alice"]).set == 24 * 15
    with pytest.raises(ScnError, match=f"role '{roles['alice']}' may not write the reading of '{roles['bob']}'"):
        import_readings(alice, labels, roles["bob"])
    assert owner.readings.readers() == [roles["alice"]]  # nothing of the refused file is there
    with pytest.raises(ScnError, match="may not write"):  # nor one point, as the app saves them
        alice.readings.set("hand003", 0, 5.0, 5.0, reader=roles["bob"])
    alice.readings.set("hand003", 0, 5.0, 5.0)  # her own: the role that connects, whatever --user said
    assert owner.readings.tables()[roles["alice"]].points["hand003"][0].tolist() == [5.0, 5.0]
    # bob's own import works, and cannot replace alice's either
    import_readings(bob, labels, roles["bob"])
    with pytest.raises(ScnError, match="may not write"):
        import_readings(bob, labels, roles["alice"])
    # a reviewer may import in a reader's name; the reading records who wrote it
    import_readings(carol, labels, roles["bob"])
    with owner.db.read() as s:
        from sqlalchemy import select

        from scn_annotator.db.models import Reading

        authors = dict(s.execute(select(Reading.reader, Reading.author).distinct()).all())
    assert authors == {roles["alice"]: roles["alice"], roles["bob"]: roles["carol"]}  # not the --user they gave
    # adjudication is the reviewer's
    with pytest.raises(ScnError, match="reviewer"):
        decide_consensus(alice)
    assert decide_consensus(carol).images == 24
    for p in (alice, bob, carol):
        p.close()
