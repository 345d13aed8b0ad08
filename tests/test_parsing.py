"""MovieLens CSV parsing and joining (components/movielens_example_gen/parsing.py)."""

import pytest

from components.movielens_example_gen import parsing
from models import features


@pytest.mark.parametrize("title, year", [
    ("Toy Story (1995)", 1995),
    ("Nixon (1995) ", 1995),
    ("City of Lost Children, The (Cité des enfants perdus, La) (1995)", 1995),
    ("Babylon 5 (1993–1998)", 1993),
    ("Babylon 5", None),
    ("1984 (1984)", 1984),
    ("Brazil (Director's Cut) (1985)", 1985),
    ("Movie (20xx)", None),
])
def test_parse_year(title, year):
    assert parsing.parse_year(title) == year


def test_split_genres():
    assert parsing.split_genres("Adventure|Animation|Children") == (
        "Adventure", "Animation", "Children")
    assert parsing.split_genres("(no genres listed)") == (features.NO_GENRES,)
    assert parsing.split_genres("") == (features.NO_GENRES,)


@pytest.mark.parametrize("eol", ["\r\n", "\n"])
def test_read_movies_handles_line_endings_quotes_and_utf8(eol):
    text = eol.join([
        "movieId,title,genres",
        '11,"American President, The (1995)",Comedy|Drama|Romance',
        '29,"City of Lost Children, The (Cité des enfants perdus, La) (1995)",Adventure|Sci-Fi',
        "40697,Babylon 5,Sci-Fi",
        "143410,Hyena Road,(no genres listed)",
    ]) + eol
    movies, rejected = parsing.read_movies(parsing.iter_text_lines(text.encode()))
    assert rejected == []
    assert movies[11] == parsing.Movie(11, "American President, The (1995)",
                                       ("Comedy", "Drama", "Romance"), 1995)
    assert movies[29].title.startswith("City of Lost Children, The (Cité")
    assert movies[29].genres == ("Adventure", "Sci-Fi")
    assert movies[40697].year is None
    assert movies[143410].genres == (features.NO_GENRES,)


def test_read_movies_reports_bad_rows_by_line_and_keeps_good_ones():
    text = "\r\n".join([
        "movieId,title,genres",
        "1,Toy Story (1995),Comedy",
        "x2,Jumanji (1995),Adventure",
        "3,Grumpier Old Men (1995)",
        "1,Duplicate (1999),Drama",
        "4,Waiting to Exhale (1995),Comedy|Drama",
    ])
    movies, rejected = parsing.read_movies(parsing.iter_text_lines(text.encode()), "m.csv")
    assert sorted(movies) == [1, 4]
    assert rejected == [
        "m.csv line 3: field 'movieId' is not an integer: 'x2'",
        "m.csv line 4: expected 3 fields (movieId,title,genres), got 2",
        "m.csv line 5: duplicate movieId 1",
    ]


def test_read_movies_rejects_a_wrong_header():
    with pytest.raises(ValueError, match="m.csv: expected a MovieLens header"):
        parsing.read_movies(iter(["id,name\n", "1,x\n"]), "m.csv")


def test_read_movies_names_a_row_by_its_first_line_across_quoted_newlines_and_a_bom():
    text = "\r\n".join([
        "movieId,title,genres",
        '1,"Toy Story,\r\nThe (1995)",Comedy',  # a quoted title over two lines: lines 2-3
        "x2,Jumanji (1995),Adventure",  # line 4
        "",  # line 5: empty, skipped silently
        '"3","Grumpier,\nOld Men (1995)"',  # lines 6-7, two fields
        "0,Zero (1995),Drama",  # line 8
    ])
    movies, rejected = parsing.read_movies(
        parsing.iter_text_lines(b"\xef\xbb\xbf" + text.encode()), "m.csv")
    assert sorted(movies) == [1]
    assert movies[1].title == "Toy Story,\r\nThe (1995)"
    assert rejected == [
        "m.csv line 4: field 'movieId' is not an integer: 'x2'",
        "m.csv line 6: expected 3 fields (movieId,title,genres), got 2",
        "m.csv line 8: field 'movieId' is below 1: '0'",
    ]


def test_parse_rating_accepts_crlf():
    assert parsing.parse_rating("1,31,2.5,1260759144\r\n") == parsing.Rating(1, 31, 2.5, 1260759144)
    assert parsing.parse_rating("1,31,0.5,0").rating == 0.5
    assert parsing.parse_rating("1,31,5,1").rating == 5.0


@pytest.mark.parametrize("stars, accepted", [
    # The valid ratings are the closed interval [RATING_MIN, RATING_MAX] = [0.5, 5.0] of finite
    # numbers (the schema's domain); the parser does not insist on half-star steps. Each edge
    # from both sides: a bound moved by half a star (`<= RATING_MAX + 0.5`, `< RATING_MIN`)
    # or made strict (`<`) flips one of these.
    ("0.0", False), ("0.25", False), ("0.4999", False), ("0.5", True), ("0.75", True),
    ("4.75", True), ("5.0", True), ("5.0001", False), ("5.5", False),
])
def test_parse_rating_accepts_exactly_the_closed_range_half_to_five_stars(stars, accepted):
    line = f"1,31,{stars},1260759144"
    if accepted:
        assert parsing.parse_rating(line).rating == float(stars)
    else:
        with pytest.raises(parsing.BadRowError, match=f"out of range 0.5..5: '{stars}'"):
            parsing.parse_rating(line)


@pytest.mark.parametrize("line, message", [
    ("1,31,2.5", "expected 4 fields"),
    ("1,31,abc,1260759144", "field 'rating' is not a number: 'abc'"),
    ("1,31,nan,1260759144", "field 'rating' is not finite"),
    ("u1,31,2.5,1260759144", "field 'userId' is not an integer: 'u1'"),
    ("1,31,2.5,yesterday", "field 'timestamp' is not an integer"),
    # Rows that parse but break the schema's domains are quarantined too (README: Failure modes).
    ("1,31,7.5,1260759144", "field 'rating' is out of range 0.5..5: '7.5'"),
    ("1,31,-1.0,1260759144", "field 'rating' is out of range 0.5..5: '-1.0'"),
    ("0,31,2.5,1260759144", "field 'userId' is below 1: '0'"),
    ("1,31,2.5,-5", "field 'timestamp' is below 0: '-5'"),
])
def test_parse_rating_errors_name_the_field_and_quote_the_row(line, message):
    with pytest.raises(parsing.BadRowError) as e:
        parsing.parse_rating(line + "\r\n")
    assert str(e.value) == f"{message} (row {line!r})" or (
        message in str(e.value) and str(e.value).endswith(f"(row {line!r})"))


def test_to_example_joins_rating_and_movie():
    movie = parsing.Movie(29, "Cité (1995)", ("Adventure", "Sci-Fi"), 1995)
    example = parsing.to_example(parsing.Rating(7, 29, 4.5, 1000), movie)
    f = example.features.feature
    assert f[features.USER_ID].int64_list.value == [7]
    assert f[features.MOVIE_ID].int64_list.value == [29]
    assert f[features.RATING].float_list.value == [4.5]
    assert f[features.TIMESTAMP].int64_list.value == [1000]
    assert f[features.GENRES].bytes_list.value == [b"Adventure", b"Sci-Fi"]
    assert f[features.TITLE].bytes_list.value[0].decode("utf-8") == "Cité (1995)"
    assert f[features.YEAR].int64_list.value == [1995]
    no_year = parsing.to_example(parsing.Rating(7, 1, 3.0, 1),
                                 parsing.Movie(1, "X", ("War",), None))
    assert features.YEAR not in no_year.features.feature
