"""The search language (issue 18), clause by clause, and its bounds: whatever is typed into the box, ``parse``
returns a :class:`Query` of plain values or raises a one-line :class:`QueryError` (HTTP 400), never anything else;
and text that reaches FTS5 through :func:`fts_phrase` is a phrase of the user's words, never an operator."""

from __future__ import annotations

import base64
import re
import sqlite3
import string
from collections.abc import Iterator

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from otel_corr.server._query import QueryError
from otel_corr.server._search import (
    MAX_CLAUSES,
    MAX_QUERY_LENGTH,
    Query,
    SearchError,
    Term,
    fts_phrase,
    parse,
    parse_id,
)

NOW = 1_796_119_200_000_000_000  # 2026-12-01T10:00:00Z
HOUR = 3_600_000_000_000
DAY = 24 * HOUR
TRACE = "0af7651916cd43dd8448eb211c80319c"
RAW = bytes.fromhex(TRACE)
SPAN = "b7ad6b7169203331"
NONZERO_16 = st.binary(min_size=16, max_size=16).filter(any)


def q(text: str, **kwargs: int | str | None) -> Query:
    return parse(text, now_ns=NOW, **kwargs)  # type: ignore[arg-type]


def refused(text: str) -> str:
    """The message of the SearchError ``text`` gets (one line, naming the part)."""
    with pytest.raises(SearchError) as caught:
        q(text)
    message = str(caught.value)
    assert message and "\n" not in message
    return message


# --- IDs in every form ---------------------------------------------------------------------------------------


@given(NONZERO_16)
def test_every_form_of_a_trace_id_names_the_same_trace(raw: bytes) -> None:
    """32 hex in either case, a UUID with dashes, base64 standard and URL-safe, with and without ``==``."""
    hexed = raw.hex()
    b64 = base64.b64encode(raw).decode()
    url = base64.urlsafe_b64encode(raw).decode()
    uuid = f"{hexed[:8]}-{hexed[8:12]}-{hexed[12:16]}-{hexed[16:20]}-{hexed[20:]}"
    forms = {hexed, hexed.upper(), uuid, uuid.upper(), b64, b64.rstrip("="), url, url.rstrip("=")}
    # A 22-character base64 of only lower-case letters reads as a word (see parse_id); 16 random bytes never do that.
    for form in forms:
        assert parse_id(form) == ("trace", raw), form
        if form.startswith("-"):  # URL-safe base64 of a first byte f8-fb: see test_a_dash_first_base64_id_is_an_id
            continue
        query = q(form)
        assert query.ids == (form,) and query.lone == form and not query.terms, form


def test_the_id_forms_of_one_trace() -> None:
    b64 = base64.b64encode(RAW).decode()
    assert b64.endswith("==")
    for form in [TRACE, TRACE.upper(), "0af76519-16cd-43dd-8448-eb211c80319c", b64, b64[:22], "CvdlGRbNQ92ESOshHIAxnA"]:
        assert parse_id(form) == ("trace", RAW), form
    assert parse_id(base64.urlsafe_b64encode(b"\xfb\xff" * 8).decode()[:22]) == ("trace", b"\xfb\xff" * 8)


def test_a_dash_first_base64_id_is_an_id() -> None:
    form = base64.urlsafe_b64encode(b"\xf8" + bytes(15)).decode().rstrip("=")
    assert form == "-AAAAAAAAAAAAAAAAAAAAA" and parse_id(form) == ("trace", b"\xf8" + bytes(15))
    assert q(form).lone == form


def test_excluding_a_21_character_word_still_excludes() -> None:
    query = q("checkout -DeadlineExceededError")
    assert query.excluded == (Term("DeadlineExceededError"),) and query.ids == ()


def test_a_span_id_and_what_names_nothing() -> None:
    assert parse_id(SPAN) == ("span", bytes.fromhex(SPAN))
    assert parse_id(SPAN.upper()) == ("span", bytes.fromhex(SPAN))
    # All-zero IDs are invalid in W3C trace context; other lengths and plain words are not IDs.
    for text in [
        "0" * 32,
        "0" * 16,
        "A" * 22,
        "AAAAAAAAAAAAAAAAAAAAAA==",
        TRACE[:31],
        TRACE + "0",
        SPAN[:15],
        "payment",
        "",
    ]:
        assert parse_id(text) is None, text
    assert parse_id("abcdefghijklmnopqrstuv") is None  # 22 lower-case letters: a word, not base64


def test_a_lone_token_opens_a_trace_span_or_request() -> None:
    """One bare token naming a trace (by trace, span or request ID) is ``lone``: the store opens it directly."""
    assert q(TRACE) == Query(text=TRACE, ids=(TRACE,), lone=TRACE)
    assert q(f"  {SPAN}\t") == Query(text=f"  {SPAN}\t", ids=(SPAN,), lone=SPAN)
    # A request ID is also a word to look for in log lines (the store tries both).
    assert q("req-7f3a.b_2:9") == Query(text="req-7f3a.b_2:9", lone="req-7f3a.b_2:9", terms=(Term("req-7f3a.b_2:9"),))
    # Not lone: a quoted token, an exclusion, a second token, or a token no request ID could be.
    assert q(f'"{TRACE}"').lone is None
    assert q(f"{TRACE} payment").lone is None
    assert q("payment declined").lone is None
    assert q("user.id=42").lone is None
    assert q("naïve").lone is None  # not [A-Za-z0-9._:-]


def test_in_a_longer_query_an_id_is_an_id_clause() -> None:
    """ "This trace, or a log line of the trace contains it": the ID stays an ID, not a word."""
    query = q(f"timeout {TRACE} {SPAN}")
    assert query.ids == (TRACE, SPAN) and query.terms == (Term("timeout"),) and query.lone is None
    # Excluded, an ID form is an excluded word: "-<id>" cannot mean "not this trace" in a text search.
    assert q(f"timeout -{TRACE}").excluded == (Term(TRACE),)


# --- words, phrases, prefixes, exclusions ---------------------------------------------------------------------


def test_words_phrases_and_prefixes() -> None:
    query = q('GatewayError "payment declined" pay* Ünïcødé 東京')
    assert query.terms == (
        Term("GatewayError"),
        Term("payment declined"),
        Term("pay", prefix=True),
        Term("Ünïcødé"),
        Term("東京"),
    )
    assert not query.span_filters
    # Words keep their punctuation; FTS5 splits them the same way in the query and in the log line.
    assert q("order-42.a_b").terms == (Term("order-42.a_b"),)
    assert q("pay**").terms == (Term("pay", prefix=True),)


def test_a_prefix_needs_three_letters_or_digits() -> None:
    for text in ["pa*", "*", "**", "p.y*", "a-b*"]:
        assert "prefix" in refused(text)
    assert q("über*").terms == (Term("über", prefix=True),)
    assert q("404*").terms == (Term("404", prefix=True),)


def test_exclusions() -> None:
    query = q('checkout -retry -"cache miss" -user.id=7 -env=dev')
    assert query.terms == (Term("checkout"),)
    assert query.excluded == (Term("retry"), Term("cache miss"))
    assert query.excluded_attributes == (("user.id", "7"), ("env", "dev"))
    # A dash inside a word or alone is text, not an exclusion.
    assert q("a-b - c").terms == (Term("a-b"), Term("c"))
    assert "exclusions only" in refused("-retry")
    assert "exclusions only" in refused('-retry -"cache miss" -user.id=7')


def test_an_excluded_prefix_is_a_prefix_or_refused() -> None:
    try:
        query = q("checkout -pay*")
    except SearchError:
        return
    assert query.excluded == (Term("pay", prefix=True),)


def test_quotes() -> None:
    assert q('"a ""quoted"" word"').terms == (Term("a "), Term("quoted"), Term(" word"))
    assert q('say "it\'s   done"').terms == (Term("say"), Term("it's   done"))
    assert q('""  "  " ok').terms == (Term("ok"),)  # empty phrases have no words: dropped
    for text in ['"payment', 'payment "declined', 'user.id="42', '-"cache miss', 'ok "a" "b']:
        assert "not closed" in refused(text)


# --- key=value ---------------------------------------------------------------------------------------------------


def test_attributes() -> None:
    query = q('user.id=42 http.route=/pay/{id} key="value with spaces" flag=true ratio=0.5 empty=')
    assert query.attributes == (
        ("user.id", "42"),
        ("http.route", "/pay/{id}"),
        ("key", "value with spaces"),
        ("flag", "true"),
        ("ratio", "0.5"),
        ("empty", ""),
    )
    assert query.span_filters and not query.terms
    # The value keeps everything after the first '=' (a URL's query string, a base64 value).
    assert q("http.url=http://x/?a=b&c==").attributes == (("http.url", "http://x/?a=b&c=="),)
    assert q("tenant:id=a").attributes == (("tenant:id", "a"),)
    # No key: a word.
    assert q("=42").attributes == () and q("=42").terms == (Term("=42"),)


# --- filters and time ----------------------------------------------------------------------------------------------


def test_service_status_duration() -> None:
    query = q("GatewayError service:checkout status:5xx duration>500ms duration<2s")
    assert query.service == "checkout" and query.status == (500, 600) and not query.error
    assert query.min_duration_ns == 500_000_001 and query.max_duration_ns == 1_999_999_999
    assert query.span_filters
    assert q('x service:"checkout api"').service == "checkout api"
    assert q("x status:404").status == (404, 405)
    assert q("x STATUS:2XX").status == (200, 300)
    for text in ["status:error", "status:err", "status:failed", "status:ERROR"]:
        assert q(text).error and q(text).status is None, text
    assert q("x duration>=1s").min_duration_ns == 1_000_000_000
    assert q("x duration<=1.5s").max_duration_ns == 1_500_000_000
    assert q("duration>1h") == Query(text="duration>1h", min_duration_ns=HOUR + 1)  # alone: a duration search
    # The page's service filter; the box's service: wins.
    assert q("x", service="cart").service == "cart"
    assert q("x service:checkout", service="cart").service == "checkout"


def test_bad_filters_say_which() -> None:
    assert "status" in refused("x status:600")
    assert "status" in refused("x status:oops")
    assert "needs a value" in refused("x service:")
    assert "cannot be excluded" in refused("x -service:checkout")
    assert "cannot be excluded" in refused("x -duration>1s")
    for text in ["x duration>5", "x since:abc", "x since:0s", "x since:-1h", "x until:2026-13-01T00:00:00Z"]:
        with pytest.raises(QueryError) as caught:
            q(text)
        assert text.split()[1].split(":")[0].split(">")[0] in str(caught.value), text


def test_time_window() -> None:
    assert q("x since:1h").since_ns == NOW - HOUR
    assert q("x since:7d").since_ns == NOW - 7 * DAY
    assert q("x since:90m").since_ns == NOW - 90 * 60_000_000_000
    assert q("x since:2026-12-01T09:00:00Z").since_ns == NOW - HOUR
    assert q("x until:2026-12-01T10:00:00.5+00:00").until_ns == NOW + 500_000_000
    assert q("x until:1h").until_ns == NOW - HOUR  # an hour ago
    assert q("x", since_ns=NOW - DAY).since_ns == NOW - DAY  # the page's lookback / --since
    assert q("x since:1h", since_ns=NOW - DAY).since_ns == NOW - HOUR
    assert "before since" in refused("x since:1h until:2h")
    assert "before since" in refused("x until:2026-11-30T00:00:00Z since:2026-12-01T00:00:00Z")


def test_nothing_to_search_for() -> None:
    for text in ["", "   ", '""', "!!! ??? ---", "^ ( )", "since:1h until:5m"]:
        assert "nothing to search for" in refused(text), text


def test_a_lone_filter_is_not_a_request_id() -> None:
    assert q("service:checkout").lone is None
    assert q("status:500").lone is None
    assert "nothing to search for" in refused("since:1h")


def test_a_duration_with_an_exclusion_is_taken_like_the_duration_alone() -> None:
    assert q("duration>1s").min_duration_ns == 1_000_000_001
    assert q("duration>1s -retry").excluded == (Term("retry"),)


def test_the_contract_example() -> None:
    text = 'GatewayError "payment declined" -retry user.id=42 service:checkout status:5xx duration>500ms since:24h'
    assert q(text) == Query(
        text=text,
        terms=(Term("GatewayError"), Term("payment declined")),
        excluded=(Term("retry"),),
        attributes=(("user.id", "42"),),
        service="checkout",
        status=(500, 600),
        min_duration_ns=500_000_001,
        since_ns=NOW - 24 * HOUR,
    )


# --- the bounds ------------------------------------------------------------------------------------------------------


def test_length_and_clause_bounds() -> None:
    assert len(q("a" * MAX_QUERY_LENGTH).terms) == 1
    assert "characters" in refused("a" * (MAX_QUERY_LENGTH + 1))
    assert "characters" in refused("x" * 10_240)
    assert "characters" in refused('"' * 10_240)  # refused for length before the quotes are read
    assert len(q(" ".join(["w"] * MAX_CLAUSES)).terms) == MAX_CLAUSES
    assert "parts" in refused(" ".join(["w"] * (MAX_CLAUSES + 1)))
    assert "parts" in refused(" ".join(["-w"] * (MAX_CLAUSES + 1)))


#: Hostile text that must come back as plain values: the words are looked for, the syntax is not obeyed.
HOSTILE = {
    "NEAR(payment declined)": (Term("NEAR(payment"), Term("declined)")),
    "payment AND OR NOT declined": (Term("payment"), Term("AND"), Term("OR"), Term("NOT"), Term("declined")),
    "body:payment": (Term("body:payment"),),
    "^payment": (Term("^payment"),),
    "'; DROP TABLE spans; --": (Term("DROP"), Term("TABLE"), Term("spans;")),  # "';" and "--" have no words
    "x' OR '1'='1": (Term("x'"), Term("OR")),
    "{payment declined}": (Term("{payment"), Term("declined}")),
}


@pytest.mark.parametrize("text", sorted(HOSTILE))
def test_fts_and_sql_syntax_is_text(text: str) -> None:
    query = q(text)
    assert query.terms == HOSTILE[text]


def test_fts_operators_in_the_box_match_as_words() -> None:
    """What the store sends FTS5 for a term is a phrase of its words: 'AND' finds the word 'and', 'NEAR(' 'near'."""
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE t USING fts5(body, tokenize='unicode61')")
    db.execute("INSERT INTO t(rowid, body) VALUES (1, 'near and or not payment declined body')")
    db.execute("INSERT INTO t(rowid, body) VALUES (2, 'payment')")
    for text in [*HOSTILE, "AND", "NOT payment", "payment -", "*", "NEAR", "(", ")", ":", "col:word"]:
        for term in q(text).terms if any(c.isalnum() for c in text) else [Term(text)]:
            rows = db.execute("SELECT rowid FROM t WHERE t MATCH :q", {"q": fts_phrase(term.text)}).fetchall()
            assert rows in ([], [(1,)], [(1,), (2,)]), (text, term)
    db.close()


#: The parser's own delimiters and FTS5/SQL punctuation, so that random text exercises every branch.
SYNTAX = st.lists(
    st.sampled_from(list("\"-*=:<>() ^'\\;\x00\t\n" + string.ascii_letters[:6] + string.digits[:3] + "éü東"))
    | st.sampled_from(["AND", "NEAR", "service:", "status:", "since:", "until:", "duration>", "user.id=", "1h", "5xx"])
    | st.sampled_from(["500ms", "2026-12-01T10:00:00Z", TRACE, SPAN, "-AAAAAAAAAAAAAAAAAAAAA", "pay*"]),
    max_size=30,
).map("".join)
#: Any code point, lone surrogates included (argv on Linux carries undecodable bytes as surrogates).
ANY = st.text(st.characters(exclude_categories=()), max_size=1100)


@settings(max_examples=1500, deadline=None)
@given(SYNTAX | ANY | st.text(max_size=2000))
@example("\x00")
@example("\ud800 \udcff payment")
@example('"' * 1024)
@example("-" * 1024)
@example("since:99999999999999999999h x")
@example("x duration>-9223372036854775807ns")
@example("x until:9999-12-31T23:59:59Z")
def test_any_text_is_a_query_or_a_one_line_refusal(text: str) -> None:
    try:
        query = q(text)
    except QueryError as exc:  # SearchError, or the QueryError of a duration or a time (both answered as 400)
        message = str(exc)
        assert message and "\n" not in message and len(message) < 300
    else:
        text = re.sub("[\ud800-\udfff]", "\ufffd", text)  # lone surrogates cannot reach SQLite: replaced
        assert query.text == text
        assert len(query.ids) + len(query.terms) + len(query.excluded) + len(query.attributes) <= MAX_CLAUSES
        assert (
            query.ids
            or query.terms
            or query.attributes
            or query.lone
            or query.service
            or query.status
            or (query.error or query.min_duration_ns is not None or query.max_duration_ns is not None)
        )
        # Every value is a piece of what was typed: nothing is made up, nothing escaped or rewritten.
        for piece in [*query.ids, *(t.text for t in query.terms + query.excluded)]:
            assert piece in text
        for key, value in query.attributes + query.excluded_attributes:
            assert key in text and value in text


def _terms(query: Query) -> Iterator[Term]:
    yield from query.terms
    yield from query.excluded
    yield from (Term(i) for i in query.ids)


@settings(max_examples=400, deadline=None)
@given(SYNTAX | st.text(max_size=200))
@example("a\x00b")
def test_every_term_is_a_valid_fts5_phrase(text: str) -> None:
    try:
        query = q(text)
    except QueryError:
        return
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE t USING fts5(body, tokenize='unicode61')")
    for term in _terms(query):
        match = fts_phrase(term.text) + (" *" if term.prefix else "")
        db.execute("SELECT rowid FROM t WHERE t MATCH :q", {"q": match}).fetchall()
    db.close()


@given(st.text(st.characters(exclude_categories=["Cs"]).filter(lambda c: c != "\x00"), max_size=60))
@example('AND OR NOT NEAR( "x" ^y col:z *')
def test_fts_phrase_is_one_phrase_of_the_words(text: str) -> None:
    """Whatever the text, its quoted form finds a row holding that text when it has words, and is never an FTS5
    syntax error (NUL aside: see test_every_term_is_a_valid_fts5_phrase)."""
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE t USING fts5(body, tokenize='unicode61')")
    db.execute("CREATE VIRTUAL TABLE v USING fts5vocab(t, instance)")
    db.execute("INSERT INTO t(rowid, body) VALUES (1, :body)", {"body": text})
    (words,) = db.execute("SELECT count(*) FROM v").fetchone()
    rows = db.execute("SELECT rowid FROM t WHERE t MATCH :q", {"q": fts_phrase(text)}).fetchall()
    assert rows == ([(1,)] if words else [])
    db.close()
