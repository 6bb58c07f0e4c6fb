"""Keyset paging in am's store: the cursors, the query plans of every paged list
(each page one index range: no scan, no sort), and pages that stay right while
the list changes between them (nothing that stays is skipped, nothing is shown
twice, nothing is shown that never was)."""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from applikant.manager.errors import BadRequest, NotFound
from applikant.manager.store import SYSTEM, Store
from applikant.manager.store.paging import Page, decode, encode, every
from applikant.manager.store.schema import MIGRATIONS
from tests.conftest import BACKENDS
from tests.manager.conftest import FAST
from tests.manager.helpers import is_postgres, random_ed25519_line, raw

ZERO = "0" * 40


# ---- cursors -------------------------------------------------------------------------


def test_a_cursor_names_its_list_and_key() -> None:
    cursor = encode("repos", 42)
    assert decode("repos", cursor, int) == (42,)
    assert decode("users", encode("users", "Ålice/ü"), str) == ("Ålice/ü",)
    assert decode("repos", None, int) is None and decode("repos", "", int) is None
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


@pytest.mark.parametrize(
    "bad",
    [
        "x",
        "!!!!",
        "é",
        "A" * 600,
        encode("users", "alice"),  # another list's
        encode("repos-newest", 4),  # the same list in the other order
        encode("repos", "4"),  # a key of the wrong type
        encode("repos", True),
        encode("repos", 4, 5),
        "WzEsMl0",  # [1,2]
        "e30",  # {}
        12,
    ],
)
def test_a_cursor_from_elsewhere_is_refused(bad: object) -> None:
    with pytest.raises(BadRequest, match="cursor is not one this list gave"):
        decode("repos", bad, int)


def test_store_lists_refuse_bad_cursors_and_limits(store: Store, alice: str) -> None:
    with pytest.raises(BadRequest):
        store.repos.page(cursor=encode("users", "a"))
    with pytest.raises(BadRequest):
        store.users.page(cursor="garbage!")
    with pytest.raises(BadRequest):
        store.audit.page(cursor=encode("builds", 3))
    for bad in (0, 1001, -1, True, "5"):
        with pytest.raises(BadRequest):
            store.repos.page(limit=bad)  # type: ignore[arg-type]
    store.repos.create("alice/a", actor=SYSTEM)
    mine = store.repos.page(owner="alice", limit=1)
    assert mine.next is None and mine.total == 1
    store.repos.create("alice/b", actor=SYSTEM)
    first = store.repos.page(owner="alice", limit=1)
    store.groups.create("team", actor=SYSTEM)
    with pytest.raises(BadRequest, match="another owner"):
        store.repos.page(owner="team", cursor=first.next)


def test_total_only_when_free(store: Store, alice: str) -> None:
    for name in ("a", "b", "c"):
        store.repos.create(f"alice/{name}", actor=SYSTEM)
    whole = store.repos.page(limit=3)
    assert (len(whole.items), whole.next, whole.total) == (3, None, 3)
    first = store.repos.page(limit=2)
    assert (len(first.items), first.total) == (2, None) and first.next
    rest = store.repos.page(limit=2, cursor=first.next)
    assert ([r["name"] for r in rest.items], rest.next, rest.total) == (["c"], None, None)


# ---- query plans ---------------------------------------------------------------------


@contextmanager
def statements(store: Store) -> Iterator[list[tuple[str, Any]]]:
    """Every statement the store runs in the block, as the driver got it, with
    its values (SQLite's trace has them filled in already)."""
    seen: list[tuple[str, Any]] = []
    conn: Any = store.core.connection
    if not is_postgres(store):
        conn.set_trace_callback(lambda sql: seen.append((sql, ())))
        try:
            yield seen
        finally:
            conn.set_trace_callback(None)
        return
    execute = conn.execute

    def traced(sql: str, params: Any = (), /) -> Any:
        seen.append((sql, params))
        return execute(sql, params)

    conn.execute = traced
    try:
        yield seen
    finally:
        del conn.execute


def plan_of(store: Store, sql: str, params: Any) -> tuple[list[str], list[str]]:
    """The steps of a statement's plan that read a whole table and that sort.
    On PostgreSQL sequential scans and sorts are disabled first, so that an
    index is used whenever one fits however small the tables: a scan or a sort
    still in the plan means no index serves the statement."""
    conn: Any = store.core.connection
    if not is_postgres(store):
        plan = [r["detail"] for r in conn.execute("EXPLAIN QUERY PLAN " + sql)]
        # A scan of a subquery reads what its index range gave (at most a page).
        scans = [d for d in plan if d.startswith("SCAN") and not d.startswith("SCAN arm")]
        return scans, [d for d in plan if "TEMP B-TREE" in d]
    conn.execute("SET enable_seqscan = off")
    conn.execute("SET enable_sort = off")
    try:
        plan = [r[0] for r in conn.execute("EXPLAIN (COSTS OFF) " + sql, params)]
    finally:
        conn.execute("RESET enable_seqscan")
        conn.execute("RESET enable_sort")
    sorts = [d for d in plan if re.match(r"\s*(->\s*)?(Incremental )?Sort\b", d)]
    return [d for d in plan if "Seq Scan" in d], sorts


def fill(store: Store) -> dict[str, str]:
    """A small site with every source of access, builds and deliveries."""
    ids = {name: store.users.add(name, actor=SYSTEM).id for name in ("alice", "bob", "carol")}
    ids["root"] = store.users.add("root", actor=SYSTEM, is_admin=True).id
    store.groups.create("team", actor=SYSTEM)
    store.groups.add_member("team", ids["carol"], actor=SYSTEM)
    for i in range(6):
        store.repos.create(f"alice/r{i}", actor=SYSTEM, is_public=i % 2 == 0)
        store.repos.create(f"team/t{i}", actor=SYSTEM)
    store.access.grant("alice/r1", ids["bob"], "read", actor=SYSTEM)
    store.access.grant("alice/r3", "team", "write", actor=SYSTEM)
    store.keys.add(ids["alice"], random_ed25519_line(), actor=SYSTEM)
    store.builds.enqueue("alice/r0", [{"ref": "refs/heads/main", "commit": "a" * 40}], actor=SYSTEM)
    store.webhooks.add("alice/r0", "https://example.org/hook", ["push"], actor=SYSTEM)
    store.audit.record_push(
        "alice/r0", [{"refname": "refs/heads/main", "old": ZERO, "new": "b" * 40}], actor=SYSTEM
    )
    store.audit.record("push.denied", actor=ids["bob"], repo="alice/r0")
    return ids


def paged_calls(store: Store, ids: dict[str, str]) -> list[Callable[[], Page[Any]]]:
    hook = store.webhooks.hooks("alice/r0")[0].id
    calls: list[Callable[[], Page[Any]]] = []
    for newest in (False, True):
        for kw in ({}, {"public_only": True}, {"visible_to": ids["carol"]}, {"q": "r1"}):
            calls.append(lambda kw=kw, newest=newest: store.repos.page(newest_first=newest, **kw))
            first = store.repos.page(limit=2, newest_first=newest, **kw)
            calls.append(
                lambda kw=kw, newest=newest, c=first.next: store.repos.page(
                    limit=2, cursor=c, newest_first=newest, **kw
                )
            )
    for kw in ({}, {"visible_to": ids["bob"]}, {"visible_to": ids["carol"]}, {"public_only": True}):
        calls.append(lambda kw=kw: store.repos.page(owner="alice", **kw))
    calls += [
        lambda: store.repos.page(owner="team", visible_to=ids["carol"]),
        lambda: store.users.page(),
        lambda: store.users.page(include_disabled=False, limit=2),
        lambda: store.groups.page(),
        lambda: store.keys.page(),
        lambda: store.keys.page(user=ids["alice"]),
        lambda: store.audit.page(),
        lambda: store.audit.page(action="push"),
        lambda: store.audit.page(actor=ids["bob"]),
        lambda: store.audit.page(repo="alice/r0"),
        lambda: store.audit.page(since="2000-01-01T00:00:00Z", limit=3),
        lambda: store.builds.page(),
        lambda: store.builds.page(repo="alice/r0"),
        lambda: store.builds.page(status="queued"),
        lambda: store.webhooks.delivery_page(hook),
    ]
    return calls


# Ordering a group's members by name sorts that one group's members: bounded by the
# group, not by the site.
BOUNDED_SORTS = ("FROM group_members m JOIN owners o ON o.id = m.user_id",)


def test_every_paged_query_reads_index_ranges(store: Store) -> None:
    ids = fill(store)
    calls = paged_calls(store, ids)
    checked = 0
    for call in calls:
        with statements(store) as seen:
            page = call()
        assert isinstance(page, Page)
        for sql, params in seen:
            if not sql.lstrip().upper().startswith("SELECT"):
                continue
            scans, sorts = plan_of(store, sql, params)
            assert not scans, (sql, scans)
            if not any(s in sql for s in BOUNDED_SORTS):
                assert not sorts, (sql, sorts)
            checked += 1
    assert checked > len(calls)


PAGING_INDEXES = {"repos_by_owner", "repos_public", "owners_by_kind", "audit_by_repo_action"}


def index_names(store: Store) -> set[str]:
    sql = (
        "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
        if is_postgres(store)
        else "SELECT name FROM sqlite_master WHERE type = 'index'"
    )
    return {row[0] for row in raw(store, sql)}


@pytest.mark.parametrize("backend", BACKENDS)
def test_schema_10_indexes_an_older_stores_lists(
    request: pytest.FixtureRequest, tmp_path: Any, backend: str
) -> None:
    """A store at schema 9 gets the paged lists' indexes when am opens it (the
    deliveries' index by hook, time and seq in place of the one by hook and time),
    and its lists page as a new store's do."""
    path = str(tmp_path / "old.sqlite3")
    if backend == "postgresql":
        server = request.getfixturevalue("pg_server")
        path = server.create_database()  # empty: migrated here, to schema 9 only
        request.addfinalizer(lambda: server.drop_database(path))
    with Store(path, migrations=MIGRATIONS[:9], passwords=FAST) as old:
        assert old.schema_version == 9
        assert not PAGING_INDEXES & index_names(old)
        assert "webhook_deliveries_by_hook" in index_names(old)
        ids = fill(old)
    with Store(path, passwords=FAST) as new:
        assert new.schema_version == len(MIGRATIONS) == 10
        names = index_names(new)
        assert PAGING_INDEXES | {"webhook_deliveries_by_hook_seq"} <= names
        assert "webhook_deliveries_by_hook" not in names
        pages = every(lambda c: new.repos.page(visible_to=ids["carol"], limit=3, cursor=c))
        shown = [r["full_name"] for r in pages]
        assert len(shown) == len(set(shown)) == 6 + 3 + 1  # team's, public, granted to team
        hook = new.webhooks.hooks("alice/r0")[0].id
        first = new.webhooks.delivery_page(hook, limit=1)
        second = new.webhooks.delivery_page(hook, limit=1, cursor=first.next)
        assert new.webhooks.delivery_page(hook).total == 2 and second.next is None
        assert [d.id for d in first.items + second.items] == [
            d.id for d in new.webhooks.deliveries(hook)
        ]


# ---- pages while the list changes ----------------------------------------------------


def walk(
    fetch: Callable[[str | None], Page[Any]],
    key: Callable[[Any], Any],
    present: Callable[[], set[Any]],
    change: Callable[[], None],
) -> tuple[list[Any], set[Any], set[Any]]:
    """Read a list page by page, changing it between pages. Returns what was
    shown, what was there all along, and what was ever there."""
    always = present()
    ever = set(always)
    shown: list[Any] = []
    cursor: str | None = None
    while True:
        page = fetch(cursor)
        shown += [key(item) for item in page.items]
        if page.next is None:
            return shown, always, ever
        for _ in range(3):
            change()
            now = present()
            always &= now
            ever |= now
        cursor = page.next


def check_walk(
    shown: list[Any], always: set[Any], ever: set[Any], order: Callable[[Any], Any]
) -> None:
    assert len(shown) == len(set(shown)), "an item was shown twice"
    assert always <= set(shown), f"skipped: {sorted(always - set(shown), key=order)}"
    assert set(shown) <= ever, f"never there: {set(shown) - ever}"
    assert [order(k) for k in shown] == sorted(order(k) for k in shown)


class Site:
    """Random changes to a small site, and the truth to compare pages with."""

    def __init__(self, store: Store, seed: int) -> None:
        self.store = store
        self.rng = random.Random(seed)
        self.users = [store.users.add(f"u{i}", actor=SYSTEM).id for i in range(6)]
        for g in ("g1", "g2"):
            store.groups.create(g, actor=SYSTEM)
        store.groups.add_member("g1", self.users[0], actor=SYSTEM)
        self.owners = ["u0", "u1", "u2", "g1", "g2"]
        self.n = 0
        for _ in range(40):
            self.create()

    def repos(self) -> list[str]:
        rows = self.store.core.connection.execute(
            "SELECT o.name || '/' || r.name FROM repos r JOIN owners o ON o.id = r.owner_id"
        )
        return [r[0] for r in rows]

    def create(self) -> None:
        self.n += 1
        owner = self.rng.choice(self.owners)
        name = f"{self.rng.choice('abcxyz')}{self.n}"
        self.store.repos.create(f"{owner}/{name}", actor=SYSTEM, is_public=self.rng.random() < 0.3)

    def change(self) -> None:
        rng, s = self.rng, self.store
        repos = self.repos()
        what = rng.random()
        try:
            if what < 0.3 or not repos:
                self.create()
            elif what < 0.5:
                s.repos.delete(rng.choice(repos), actor=SYSTEM)
            elif what < 0.65:
                s.access.grant(
                    rng.choice(repos), rng.choice(["u0", "g1", "u3"]), "read", actor=SYSTEM
                )
            elif what < 0.75:
                s.access.revoke(rng.choice(repos), rng.choice(["u0", "g1", "u3"]), actor=SYSTEM)
            elif what < 0.85:
                s.repos.update(rng.choice(repos), is_public=rng.random() < 0.5, actor=SYSTEM)
            elif what < 0.92:
                s.groups.add_member(rng.choice(["g1", "g2"]), "u0", actor=SYSTEM)
            else:
                s.groups.remove_member(rng.choice(["g1", "g2"]), "u0", actor=SYSTEM)
        except (NotFound, BadRequest):
            pass
        except Exception as exc:  # a member added twice
            if "already" not in str(exc):
                raise

    def readable(self, user: str | None) -> set[str]:
        """What access.check (the one decision every node relies on) lets `user` read."""
        return {r for r in self.repos() if self.store.access.check(user, r, "read").allowed}

    def ids(self, names: set[str]) -> dict[str, int]:
        return {n: int(self.store.repos.get(n).id[5:]) for n in names}


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("who", ["admin", "member", "stranger", "anonymous"])
@pytest.mark.parametrize("newest_first", [False, True])
def test_the_site_list_while_it_changes(
    store: Store, seed: int, who: str, newest_first: bool
) -> None:
    site = Site(store, seed)
    root = store.users.add("root", actor=SYSTEM, is_admin=True).id
    viewer = {"admin": root, "member": site.users[0], "stranger": site.users[3]}.get(who)
    ids: dict[str, int] = {}

    def present() -> set[str]:
        now = site.readable(viewer) if who != "admin" else set(site.repos())
        ids.update(site.ids(now))
        return now

    def fetch(cursor: str | None) -> Page[Any]:
        kw: dict[str, Any] = {"public_only": True} if viewer is None else {"visible_to": viewer}
        return store.repos.page(limit=4, cursor=cursor, newest_first=newest_first, **kw)

    shown, always, ever = walk(fetch, lambda r: r["full_name"], present, site.change)
    check_walk(shown, always, ever, lambda k: -ids[k] if newest_first else ids[k])


@pytest.mark.parametrize("seed", range(2))
def test_one_owners_list_while_it_changes(store: Store, seed: int) -> None:
    site = Site(store, seed)
    viewer = site.users[3]  # neither owns g1 nor belongs to it: grants and public only

    def present() -> set[str]:
        return {r for r in site.readable(viewer) if r.startswith("g1/")}

    def fetch(cursor: str | None) -> Page[Any]:
        return store.repos.page(owner="g1", visible_to=viewer, limit=3, cursor=cursor)

    shown, always, ever = walk(fetch, lambda r: r["full_name"], present, site.change)
    check_walk(shown, always, ever, lambda k: k.split("/")[1].casefold())


@pytest.mark.parametrize("seed", range(2))
def test_users_groups_keys_and_audit_while_they_change(store: Store, seed: int) -> None:
    rng = random.Random(seed)
    for i in range(30):
        user = store.users.add(f"{rng.choice('AbcXyz')}{i}", actor=SYSTEM).id
        store.keys.add(user, random_ed25519_line(), actor=SYSTEM)
        store.groups.create(f"grp{i}{rng.choice('qrs')}", actor=SYSTEM)
    n = [100]

    def change() -> None:
        n[0] += 1
        if rng.random() < 0.5:
            user = store.users.add(f"{rng.choice('AbcXyz')}{n[0]}", actor=SYSTEM).id
            store.keys.add(user, random_ed25519_line(), actor=SYSTEM)
            store.groups.create(f"grp{n[0]}", actor=SYSTEM)
        else:
            store.keys.remove(rng.choice(store.keys.all()).id, actor=SYSTEM)
            store.groups.delete(rng.choice(store.groups.all()).name, actor=SYSTEM)

    lists: list[tuple[Callable[..., Page[Any]], Callable[[Any], Any], Callable[[Any], Any]]] = [
        (store.users.page, lambda u: u["login"], str.casefold),
        (store.groups.page, lambda g: g.name, str.casefold),
        (store.keys.page, lambda k: int(k.id[4:]), lambda k: k),
        (store.audit.page, lambda e: e.id, lambda k: -k),
    ]
    for page, key, order in lists:

        def present(page: Callable[..., Page[Any]] = page, key: Any = key) -> set[Any]:
            out: list[Any] = []
            cursor = None
            while True:
                got = page(limit=1000, cursor=cursor)
                out += [key(i) for i in got.items]
                if got.next is None:
                    return set(out)
                cursor = got.next

        shown, always, ever = walk(
            lambda cursor, page=page: page(limit=4, cursor=cursor), key, present, change
        )
        check_walk(shown, always, ever, order)
