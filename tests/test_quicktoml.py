"""quicktoml: the same result as tomllib, or None."""

import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from applikant import quicktoml
from applikant.envconfig import load_raw

ROOT = Path(__file__).resolve().parents[1]


def test_the_documented_example_parses_like_tomllib() -> None:
    text = (ROOT / "etc" / "applikant.toml").read_text()
    assert quicktoml.parse(text) == tomllib.loads(text)
    assert quicktoml.parse(text) is not None


SIMPLE = [
    "",
    "a = 1\n",
    "[node]\nhost = \"x\"  # c\ndata_dir = '/var/lib/a'\n",
    "[dist]\nport = -3\nf = 10.0\nt = true\nu = false\n[dist.tls]\nenabled = false\n",
    "[a.b]\nx = 1\n[a]\ny = 2\n",
    'k = "tab\there"\r\n',
    "k = '#not a comment' # a comment\n",
]


@pytest.mark.parametrize("text", SIMPLE)
def test_simple_documents(text: str) -> None:
    assert quicktoml.parse(text) == tomllib.loads(text)


LEFT_TO_TOMLLIB = [
    "a = {x = 1}\n",
    'a = "esc\\n"\n',
    'a = """x"""\n',
    "a = 1_000\n",
    "a = 0x10\n",
    "a = 007\n",
    "a = 1e3\n",
    "a = inf\n",
    "a = 1979-05-27\n",
    "[[t]]\nx = 1\n",
    "a = 1\na = 2\n",
    "[t]\n[t]\n",
    "a.b = 1\n",
    '"quoted key" = 1\n',
    "a = \n",
    "a = 'x' y\n",
    "[t] x\n",
    "a = 1\n[a]\n",
    "[a]\nx = 1\n[a.x]\n",
    "a = 'unterminated\n",
    "= 1\n",
    "a = 1.\n",
    "a = .5\n",
    "a = 'ctrl\x01'\n",
    "[a\n",
]


@pytest.mark.parametrize("text", LEFT_TO_TOMLLIB)
def test_unusual_documents_go_to_tomllib(text: str) -> None:
    assert quicktoml.parse(text) is None


_key = st.text("abcxyz_-019", min_size=1, max_size=4)
_scalar = st.one_of(
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6).map(
        lambda f: round(f, 3)
    ),
    st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=10),
)


def _dump(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return (
            '"' + value + '"'
            if '"' not in value and "\\" not in value
            else "'" + value.replace("'", "") + "'"
        )
    return repr(value)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(_key, st.dictionaries(_key, _scalar, max_size=4), max_size=3),
    st.lists(st.sampled_from(["", "  ", "# c", "\t"]), max_size=3),
)
def test_agrees_with_tomllib_or_declines(tables: dict, filler: list) -> None:
    lines = list(filler)
    for name, table in tables.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {_dump(v)}" for k, v in table.items()]
    text = "\n".join(lines) + "\n"
    try:
        expected = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        expected = None
    got = quicktoml.parse(text)
    assert got is None or got == expected


def test_load_raw_falls_back(tmp_path: Path) -> None:
    simple = tmp_path / "a.toml"
    simple.write_text('[af]\nnode = "af"\n')
    assert load_raw(str(simple)) == {"af": {"node": "af"}}
    unusual = tmp_path / "b.toml"
    unusual.write_text('[af]\nnode = "a\\u0066"\nx = [1]\n')
    assert load_raw(str(unusual)) == {"af": {"node": "af", "x": [1]}}
    from applikant.envconfig import ConfigError

    with pytest.raises(ConfigError):
        load_raw(str(tmp_path / "missing.toml"))
    broken = tmp_path / "c.toml"
    broken.write_text("[af\n")
    with pytest.raises(ConfigError):
        load_raw(str(broken))


@pytest.mark.parametrize(
    "text",
    [
        "a = []\n",
        'a = ["x", "y",]\n',
        "a = [1, 2] # c\n",
        "a = {}\n",
        "a = { } # none\n",
    ],
)
def test_simple_arrays_and_the_empty_table_are_read_here(text: str) -> None:
    assert quicktoml.parse(text) == tomllib.loads(text)


@pytest.mark.parametrize("text", ['a = ["x,y"]\n', "a = [[1]]\n", 'a = ["]"]\n', "a = {b = 1}\n"])
def test_subtle_arrays_and_tables_go_to_tomllib(text: str) -> None:
    assert quicktoml.parse(text) is None
