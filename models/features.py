"""Feature names and constants: the one source of truth for every stage of the pipeline.

The ExampleGen writes the raw features below, the curated schema in `schema/schema.pbtxt` describes
them, `preprocessing.py` turns them into the transformed features, and the models read those.
"""

# Raw features, as written by the MovieLens ExampleGen.
USER_ID = "user_id"  # int64, MovieLens userId
MOVIE_ID = "movie_id"  # int64, MovieLens movieId
RATING = "rating"  # float, 0.5..5.0 in half stars
TIMESTAMP = "timestamp"  # int64, seconds since the epoch
# A timestamp "not given" where it is optional (the served tf.Examples): the rating models read
# any negative time as "now" (models/base.py, UserDrift).
NO_TIMESTAMP = -1
GENRES = "genres"  # bytes, multi-valued ("Action", "Comedy", ...)
TITLE = "title"  # bytes, UTF-8
YEAR = "year"  # int64, release year parsed from the title; absent when the title has none

LABEL_KEY = RATING
RAW_FEATURES = (USER_ID, MOVIE_ID, RATING, TIMESTAMP, GENRES, TITLE, YEAR)

# Ratings live on this closed range; the schema's domain and the rating scaling both use it.
RATING_MIN = 0.5
RATING_MAX = 5.0

# MovieLens "latest" genres. "(no genres listed)" is kept as a genre of its own so that every movie
# has at least one value and the per-genre evaluation covers those movies too.
NO_GENRES = "(no genres listed)"
GENRE_NAMES = (
    "Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "IMAX", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western", NO_GENRES,
)

# Vocabularies computed by Transform (file names inside the transform graph) and their OOV buckets:
# ids never seen in training map to the OOV bucket, which the models treat as "unknown".
USER_VOCAB = "user_id"
MOVIE_VOCAB = "movie_id"
NUM_OOV_BUCKETS = 1


def transformed_name(key: str) -> str:
    """Name of the transformed feature derived from raw feature `key`."""
    return f"{key}_xf"


# Transformed features, as produced by `preprocessing.preprocessing_fn`.
USER_IDX = transformed_name(USER_ID)  # int64 [batch], 0..vocab+OOV
MOVIE_IDX = transformed_name(MOVIE_ID)  # int64 [batch]
GENRES_XF = transformed_name(GENRES)  # float [batch, len(GENRE_NAMES)], multi-hot
YEAR_XF = transformed_name(YEAR)  # float [batch], z-scored, 0 where unknown
LABEL_XF = transformed_name(LABEL_KEY)  # float [batch], rating scaled to [0, 1]
# Passed through unchanged so that the Trainer can build the movie catalogue that the exported
# model looks content up in (clients send ids only).
MOVIE_ID_PASSTHROUGH = MOVIE_ID  # int64 [batch]
TITLE_PASSTHROUGH = TITLE  # bytes [batch]

# What every model reads, batch size B: the ids' vocabulary indices and the movie's content.
MODEL_INPUTS = (USER_IDX, MOVIE_IDX, GENRES_XF, YEAR_XF)


def scale_rating(rating):
    """Stars (RATING_MIN..RATING_MAX) to the [0, 1] range the models train on."""
    return (rating - RATING_MIN) / (RATING_MAX - RATING_MIN)


def unscale_rating(scaled):
    """Inverse of `scale_rating`: model output back to stars."""
    return scaled * (RATING_MAX - RATING_MIN) + RATING_MIN

# Evaluation slices, written by the ExampleGen on both splits: how many ratings the example's user
# and movie have in the train split, bucketed ("0", "1-19", "20-100", "101+"; the edges are
# pipeline.configs.EvalSettings'). Only the Evaluator reads them: they are neither model inputs
# nor sent at serving time.
USER_ACTIVITY = "user_activity"
MOVIE_POPULARITY = "movie_popularity"
SLICE_FEATURES = (USER_ACTIVITY, MOVIE_POPULARITY)
