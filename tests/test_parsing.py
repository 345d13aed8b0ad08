"""MovieLens CSV parsing and joining (components/movielens_example_gen/parsing.py)."""

import pytest
import tensorflow as tf

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
    ("1,31,2.5", "expected 4 fields (userId,movieId,rating,timestamp), got 3"),
    ("1,31,abc,1260759144", "field 'rating' is not a number: 'abc'"),
    ("1,31,nan,1260759144", "field 'rating' is not finite: 'nan'"),
    ("u1,31,2.5,1260759144", "field 'userId' is not an integer: 'u1'"),
    ("1,m31,2.5,1260759144", "field 'movieId' is not an integer: 'm31'"),
    ("1,31,2.5,yesterday", "field 'timestamp' is not an integer: 'yesterday'"),
    # Rows that parse but break the schema's domains are quarantined too (README: Failure modes).
    ("1,31,7.5,1260759144", "field 'rating' is out of range 0.5..5: '7.5'"),
    ("1,31,-1.0,1260759144", "field 'rating' is out of range 0.5..5: '-1.0'"),
    ("0,31,2.5,1260759144", "field 'userId' is below 1: '0'"),
    ("1,0,2.5,1260759144", "field 'movieId' is below 1: '0'"),
    ("1,31,2.5,-5", "field 'timestamp' is below 0: '-5'"),
    # Only the line break is cut: the row is quoted with its trailing blank, and a trailing
    # letter stays in the field it belongs to.
    ("1,31,abc,1260759144 ", "field 'rating' is not a number: 'abc'"),
    ("1,31,2.5,X", "field 'timestamp' is not an integer: 'X'"),
    # A carriage return inside an unquoted line (a file with CR-only line breaks read as one
    # line) is a bad field, not the csv module's error.
    ("1,3\r1,2.5,5", "field 'movieId' is not an integer: '3\\r1'"),
])
def test_parse_rating_errors_name_the_field_and_quote_the_row(line, message):
    with pytest.raises(parsing.BadRowError) as e:
        parsing.parse_rating(line + "\r\n")
    # The whole message: the executor prefixes the file and line number, nothing else.
    assert str(e.value) == f"{message} (row {line!r})"


def test_parse_rating_reads_quoted_fields_and_the_smallest_ids():
    # A line with quotes goes through the csv module; one without is split on commas.
    assert parsing.parse_rating('1,31,"2.5",1260759144\r\n') == parsing.Rating(
        1, 31, 2.5, 1260759144)
    assert parsing.parse_rating('"7","1","4.0","0"') == parsing.Rating(7, 1, 4.0, 0)
    with pytest.raises(parsing.BadRowError, match="expected 4 fields"):
        parsing.parse_rating('1,"31,2",2.5')  # a quoted comma is inside a field


def test_check_header_strips_a_byte_order_mark_and_blanks_and_names_both_headers():
    parsing.check_header(["\ufeffuserId ", " movieId", "rating", "timestamp", "extra"],
                         parsing.RATINGS_HEADER, "r.csv")
    with pytest.raises(parsing.InputDataError) as e:
        parsing.check_header(["XuserId", "movieId", "rating", "timestamp"],
                             parsing.RATINGS_HEADER, "r.csv")
    assert str(e.value) == (
        "r.csv: expected a MovieLens header starting with 'userId,movieId,rating,timestamp', "
        "got 'XuserId,movieId,rating,timestamp'. Is this a MovieLens 'latest'-format folder?")


def test_read_movies_names_an_empty_file_and_a_bad_first_row_by_line_2():
    with pytest.raises(parsing.InputDataError) as e:
        parsing.read_movies(iter([]), "m.csv")
    assert str(e.value) == "m.csv: file is empty"
    movies, rejected = parsing.read_movies(
        iter(["movieId,title,genres\n", "x1,Toy Story (1995),Comedy\n",
              "2,Jumanji (1995),Adventure\n"]), "m.csv")
    assert sorted(movies) == [2]
    assert rejected == ["m.csv line 2: field 'movieId' is not an integer: 'x1'"]


def test_text_lines_end_at_cr_lf_or_crlf_without_changing_quoted_text():
    # Old Mac CR-only line breaks too; a quoted CRLF stays in its field as it is.
    data = b'movieId,title,genres\r1,"Toy\r\nStory (1995)",Comedy\n2,Jumanji (1995),Adventure\r\n'
    movies, rejected = parsing.read_movies(parsing.iter_text_lines(data), "m.csv")
    assert rejected == []
    assert movies[1].title == "Toy\r\nStory (1995)"
    assert movies[2] == parsing.Movie(2, "Jumanji (1995)", ("Adventure",), 1995)


def test_read_movies_file_reads_a_file_and_names_it(tmp_path):
    path = tmp_path / "movies.csv"
    path.write_bytes("\ufeffmovieId,title,genres\r\n1,Cité (1995),Drama\r\nx,Bad,Drama\r\n"
                     .encode("utf-8"))
    movies, rejected = parsing.read_movies_file(str(path))
    assert movies == {1: parsing.Movie(1, "Cité (1995)", ("Drama",), 1995)}
    assert rejected == [f"{path} line 3: field 'movieId' is not an integer: 'x'"]


def test_serialize_joined_parses_as_the_joined_example():
    # The executor serializes each movie's part once and appends it to each of its ratings.
    movie = parsing.Movie(29, "Cité (1995)", ("Adventure", "Sci-Fi"), 1995)
    rating = parsing.Rating(7, 29, 4.5, 1000)
    joined = parsing.serialize_joined(rating, parsing.movie_example(movie).SerializeToString())
    assert tf.train.Example.FromString(joined) == parsing.to_example(rating, movie)
    assert tf.train.Example.FromString(joined).features.feature[
        features.USER_ID].int64_list.value == [7]


@pytest.mark.parametrize("user_id, movie_id, rating, timestamp", [
    (1, 1, 0.5, 0), (127, 128, 5.0, 127), (16_383, 16_384, 3.5, 2**31),
    (2**31 - 1, 2**40, 0.7, 2**63 - 1)])
def test_rating_bytes_are_the_rating_example_serialized(user_id, movie_id, rating, timestamp):
    # Varints of 1 to 9 bytes; a rating that float32 rounds.
    r = parsing.Rating(user_id, movie_id, rating, timestamp)
    assert (tf.train.Example.FromString(parsing.rating_bytes(user_id, movie_id, rating, timestamp))
            == parsing.rating_example(r))
    # TensorFlow's own parser, which TFX's readers use, reads the joined bytes too.
    movie = parsing.Movie(movie_id, "Heat (1995)", ("Action",), 1995)
    joined = parsing.serialize_joined(r, parsing.movie_example(movie).SerializeToString())
    parsed = tf.io.parse_single_example(joined, {
        features.USER_ID: tf.io.FixedLenFeature([], tf.int64),
        features.MOVIE_ID: tf.io.FixedLenFeature([], tf.int64),
        features.RATING: tf.io.FixedLenFeature([], tf.float32),
        features.TIMESTAMP: tf.io.FixedLenFeature([], tf.int64),
        features.YEAR: tf.io.FixedLenFeature([], tf.int64),
        features.GENRES: tf.io.VarLenFeature(tf.string)})
    assert [int(parsed[k]) for k in (features.USER_ID, features.MOVIE_ID, features.TIMESTAMP,
                                     features.YEAR)] == [user_id, movie_id, timestamp, 1995]
    assert float(parsed[features.RATING]) == pytest.approx(rating, rel=1e-6)
    assert parsed[features.GENRES].values.numpy().tolist() == [b"Action"]


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
