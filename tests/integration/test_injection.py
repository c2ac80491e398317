"""Hostile ids and titles never break or widen a Milvus filter expression.

Source ids come from user data (CSV id columns, file names), and the store builds filter
expressions from them (`store.literal` / `store.in_filter`, used by `state_of` to find a
source's existing chunks). A widened filter would make other sources' chunks look like
stale chunks of the hostile one, and they would be deleted. These tests go through the real
pipeline (CSV source -> chunker -> MiniLM -> Milvus Lite) and through the store directly.
"""

from __future__ import annotations

import csv
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corpusflow.pipeline import extract, ingest
from corpusflow.store import SCALAR_FIELDS, in_filter, literal

HOSTILE_IDS = [
    'a" or id != "',
    'b\\" or true or \\"',
    "c\\",
    "d' or 'x' == 'x",
    'e") or (source_id != "',
    'f"] or source_id not in ["',
    'g\n" or 1 == 1 #',
    'h" || source_id like "%',
]
HOSTILE_TITLE = 'Title with "quotes", back\\slashes, and source_id != "" or id like "%"'
SMALL = {"chunking": {"chunk_size": 40, "chunk_overlap": 0}}


def body(n: int, words: str) -> str:
    return " ".join(f"{words} sentence {i} of article {n}." for i in range(4))


def write_csv(path, rows) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "title", "text"])
        writer.writerows(rows)


def sid_of(raw_id: str, csv_path) -> str:
    # CSV metadata is read as one line; no project root here, so the path part is absolute
    return f"csv:{csv_path.resolve().as_posix()}:" + " ".join(raw_id.split())


def records(ctx) -> dict[str, dict]:
    target = ctx.store.alias_target()
    return {r["id"]: r for r in ctx.store.iter_rows(target, ["id", "source_id", "title", "text"])}


def test_stale_cleanup_of_a_hostile_source_deletes_nothing_else(make_ctx, tmp_path):
    plain = [(f"plain{i}", f"Plain {i}", body(i, "calm river")) for i in range(3)]
    hostile = [
        (sid, HOSTILE_TITLE, body(10 + n, "stormy sea")) for n, sid in enumerate(HOSTILE_IDS)
    ]
    src = tmp_path / "news.csv"
    write_csv(src, plain + hostile)
    ctx = make_ctx(**SMALL)
    first = ingest(ctx, extract(ctx.params, articles=[str(src)]))
    assert first.documents == len(plain) + len(hostile) and first.rejected == 0
    before = records(ctx)
    assert {r["source_id"] for r in before.values()} == {
        sid_of(row[0], src) for row in plain + hostile
    }
    assert {r["title"] for r in before.values() if "stormy" in r["text"]} == {HOSTILE_TITLE}

    # Each hostile source alone, with new text: its old chunks all go stale. Its state is
    # read through an `in` filter built from its id; the other sources are not in this run.
    for n, sid in enumerate(HOSTILE_IDS):
        write_csv(src, [(sid, HOSTILE_TITLE, body(50 + n, "quiet harbour"))])
        result = ingest(ctx, extract(ctx.params, articles=[str(src)]))
        mine = {i for i, r in before.items() if r["source_id"] == sid_of(sid, src)}
        assert mine and result.deleted == len(mine), sid  # its stale chunks, only those
        after = records(ctx)
        assert not mine & set(after)
        survivors = {i: r for i, r in before.items() if i not in mine}
        assert set(survivors) - set(after) == set(), sid  # nothing else was deleted
        assert {i: after[i] for i in survivors} == survivors, sid  # nor changed
        before = after

    # Unchanged hostile sources are recognised as unchanged: their state matched exactly.
    write_csv(
        src,
        [(sid, HOSTILE_TITLE, body(50 + n, "quiet harbour")) for n, sid in enumerate(HOSTILE_IDS)],
    )
    again = ingest(ctx, extract(ctx.params, articles=[str(src)]))
    assert again.unchanged_documents == len(HOSTILE_IDS)
    assert (again.added, again.updated, again.deleted, again.embedded) == (0, 0, 0, 0)


def test_full_cleanup_keeps_and_drops_exactly_by_source_id(make_ctx, tmp_path):
    rows = [(f"plain{i}", f"Plain {i}", body(i, "calm river")) for i in range(2)]
    rows += [
        (sid, HOSTILE_TITLE, body(10 + n, "stormy sea")) for n, sid in enumerate(HOSTILE_IDS[:3])
    ]
    src = tmp_path / "news.csv"
    write_csv(src, rows)
    ctx = make_ctx(**SMALL)
    ingest(ctx, extract(ctx.params, articles=[str(src)]))
    everything = records(ctx)

    # only one hostile source in a `full` run: every other source goes, it stays whole
    keep = sid_of(HOSTILE_IDS[0], src)
    write_csv(src, [rows[2]])
    full = ingest(ctx, extract(ctx.params, articles=[str(src)]), cleanup="full")
    assert full.unchanged_documents == 1
    assert records(ctx) == {i: r for i, r in everything.items() if r["source_id"] == keep}
    assert full.deleted == len(everything) - len(records(ctx))

    # a `full` run where the hostile source is rejected (empty text): it is protected
    write_csv(src, [rows[0], (HOSTILE_IDS[0], HOSTILE_TITLE, "")])
    protected = ingest(ctx, extract(ctx.params, articles=[str(src)]), cleanup="full")
    assert protected.rejected == 1 and protected.deleted == 0
    assert {r["source_id"] for r in records(ctx).values()} == {keep, sid_of("plain0", src)}


def _row(source_id: str, n: int) -> dict:
    row = {f: "" for f in SCALAR_FIELDS}
    row.update(
        id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{source_id}|{n}")),
        source_id=source_id,
        source_type="article",
        chunk_index=n,
        n_chunks=1,
        start_char=0,
        start_seconds=None,
        end_seconds=None,
        vector=[1.0, 0.0, 0.0, 0.5],
    )
    return row


DECOYS = ["", " ", '"', "\\", "a", 'a"', "a\\", "csv:x:1", "%", "*"]


def test_in_filter_matches_exactly_the_given_ids_for_any_text(make_ctx):
    """For arbitrary text, `state_of` (an `in` filter from `literal`) returns that source's
    rows and nothing else, in a real Milvus Lite collection full of look-alike ids."""
    ctx = make_ctx()
    store, name = ctx.store, "injection_probe"
    store.ensure_collection(name, 4)
    store.upsert(name, [_row(d, 0) for d in DECOYS])

    @settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        sid=st.text(
            alphabet=st.characters(blacklist_categories=("Cs",)) | st.sampled_from("\"\\'[]()%"),
            max_size=40,
        )
    )
    def check(sid: str) -> None:
        mine = [_row(sid, 1), _row(sid, 2)]  # index 0 is the decoys'
        store.upsert(name, mine)
        expected = {r["id"] for r in mine} | ({_row(sid, 0)["id"]} if sid in DECOYS else set())
        state = store.state_of(name, [sid])
        assert set(state) == {sid}
        assert {r["id"] for r in state[sid]} == expected
        assert {r["source_id"] for r in state[sid]} == {sid}
        both = store.state_of(name, [sid, 'a"'])
        decoy = {_row('a"', 0)["id"]}
        assert {r["id"] for r in both['a"']} == (expected if sid == 'a"' else decoy)
        store.delete_ids(name, [r["id"] for r in mine])

    check()
    # the decoys were never touched by any of the filters above
    assert {r["source_id"] for r in store.iter_rows(name, ["source_id"])} >= set(DECOYS)


def test_literal_is_a_single_string_token():
    for value in HOSTILE_IDS + [HOSTILE_TITLE, "\r\t\n\x00", "\\\\"]:
        inner = literal(value)[1:-1]
        assert literal(value) == f'"{inner}"'
        for i, ch in enumerate(inner):  # every quote inside is escaped: none ends the literal
            if ch == '"':
                backslashes = len(inner[:i]) - len(inner[:i].rstrip("\\"))
                assert backslashes % 2 == 1, value
        assert not inner.endswith("\\") or (len(inner) - len(inner.rstrip("\\"))) % 2 == 0
    assert in_filter("source_id", ['a"', "b"]) == 'source_id in ["a\\"", "b"]'
