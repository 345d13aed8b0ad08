"""Beam executor of the MovieLens ExampleGen: read, join, split (by time, at random or by each
user's time), report.

Extends TFX's `BaseExampleGenExecutor`: this class supplies the records and the MovieLens-specific
split, and writes the splits itself (write_splits) as the base class does but without its
Reshuffle before each write, which the DirectRunner held in memory whole: four fifths of the
ExampleGen's memory (docs/benchmarks.md, "ExampleGen memory"). Nothing downstream reads the
records in order: the Trainer sorts its rows and shuffles each epoch. Large ratings files are
read three times (the split's cutoff, the train split's counts, the examples) so that no Beam
stage waits on a side input computed from its own input, which the DirectRunner would hold.
Ratings travel between the stages in batches of numpy columns (batches.py), a few thousand lines
to a Beam element (the DirectRunner has a cost per element).
"""

from __future__ import annotations

import bisect
import collections
import heapq
import json
import logging
import os
from collections.abc import Callable
from typing import Any

import apache_beam as beam
import numpy as np
import tensorflow as tf
from apache_beam.coders import coders
from apache_beam.io import textio
from apache_beam.io.filesystem import CompressionTypes
from tfx.components.example_gen import base_example_gen_executor, utils, write_split
from tfx.components.util import examples_utils
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from components.movielens_example_gen import batches, parsing, slicing
from components.movielens_example_gen.config import SPAN_DIR, SplitConfig
from models import features

_LOG = logging.getLogger(__name__)
REJECTED_FILE = "rejected_rows.txt"
SUMMARY_FILE = "split_summary.json"
_MAX_LOGGED_REJECTS = 20
# Line numbers of the first rejected rows named in the error when there are too many.
_NAMED_IN_ERROR = 5
_SCAN_CHUNK = 1 << 20
_TRAIN, _EVAL = "train", "eval"
# Ratings files larger than this (together) are read three times, smaller ones once: one read
# holds the parsed ratings in memory, three cost two more parses (docs/benchmarks.md,
# "ExampleGen memory" and "ExampleGen time"). 64 MiB is about 2.5M ratings.
STREAMING_READS_ABOVE_BYTES = 64 * 2**20
# Execution parameters: JSON lists of bucket edges (see slicing.py).
USER_ACTIVITY_EDGES_KEY = "user_activity_edges"
MOVIE_POPULARITY_EDGES_KEY = "movie_popularity_edges"
# Execution parameter: 0 for a flat folder (<input_base>/ratings.csv); N >= 1 for a folder in
# spans, whose newest N spans (the newest resolved by TFX's driver from the {SPAN} pattern) are
# read as one data set, split as configured.
SPAN_WINDOW_KEY = "span_window"


def ratings_paths(exec_properties: dict[str, Any]) -> list[str]:
    """The ratings.csv files of this run, oldest first: the flat folder's, or the window of
    spans ending at the span TFX's driver resolved (spans missing from the folder skipped)."""
    input_base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
    window = int(exec_properties.get(SPAN_WINDOW_KEY) or 0)
    if not window:
        return [os.path.join(input_base, parsing.RATINGS_FILE)]
    newest = int(exec_properties[utils.SPAN_PROPERTY_NAME])
    paths = [os.path.join(input_base, SPAN_DIR.replace("{SPAN}", str(span)), parsing.RATINGS_FILE)
             for span in range(max(1, newest - window + 1), newest + 1)]
    return [p for p in paths[:-1] if tf.io.gfile.exists(p)] + paths[-1:]


class _Timestamps(beam.CombineFn):
    """Gathers the batches' timestamps as they come, 4 bytes each where they fit an unsigned
    32-bit int (MovieLens' do until 2106), concatenated once at the end (~130 MB for ml-32m);
    subclasses say what to extract from them."""

    def create_accumulator(self) -> list[np.ndarray]:
        return []

    def add_input(self, acc: list[np.ndarray], times: np.ndarray) -> list[np.ndarray]:
        # Timestamps are >= 0 (parsing rejects the rest).
        acc.append(times.astype(np.uint32) if len(times) and times.max() < 2**32 else times)
        return acc

    def merge_accumulators(self, accs) -> list[np.ndarray]:
        return [times for acc in accs for times in acc]

    @staticmethod
    def gathered(acc: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(acc) if acc else np.empty(0, dtype=np.int64)


class _TimestampQuantile(_Timestamps):
    """Exact quantile of the timestamps (numpy's, linear between the two nearest)."""

    def __init__(self, q: float):
        self._q = q

    def extract_output(self, acc: list[np.ndarray]) -> float | None:
        times = self.gathered(acc)
        return float(np.quantile(times, self._q)) if len(times) else None


class _UserTimeCutoff(_Timestamps):
    """One user's timestamps -> the time from which their ratings evaluate: that of their
    int(fraction * count)-th newest rating, or None when that is none, or every one of them."""

    def __init__(self, fraction: float):
        self._fraction = fraction

    def extract_output(self, acc: list[np.ndarray]) -> int | None:
        times = np.sort(self.gathered(acc))
        held_out = int(self._fraction * len(times))
        if not held_out:
            return None
        cutoff = int(times[len(times) - held_out])
        return cutoff if cutoff > times[0] else None  # one time for all: the user only trains


def _read(pipeline: beam.Pipeline, paths: list[str], movies_path: str, stage: str
          ) -> tuple[list, beam.PCollection]:
    """Every ratings file read and parsed: (the parse outputs per file, with their REJECTED
    rows; the valid ratings of all files, in batches). One read per file: offsets, and so the
    numbers of rejected lines, are per file. `stage` prefixes the labels (each read is its own)."""
    parsed = [
        pipeline
        | f"{stage}ReadRatings{i or ''}" >> beam.io.Read(_LineBatches(path))
        | f"{stage}Parse{i or ''}" >> beam.ParDo(_ParseRatings(movies_path)).with_outputs(
            _ParseRatings.REJECTED, main="ratings")
        for i, path in enumerate(paths)]
    ratings = (parsed[0].ratings if len(parsed) == 1 else
               [p.ratings for p in parsed] | f"{stage}AllRatings" >> beam.Flatten())
    return parsed, ratings


def _split_rule(pipeline: beam.Pipeline, config: SplitConfig, read: Callable[[], Any]
                ) -> tuple[Callable, tuple, beam.PCollection]:
    """How a batch of ratings is split: (its eval mask given the side inputs, the side inputs,
    the time cutoff for the summary: a one-element PCollection, None unless the split is by
    time). `read()` gives the ratings to compute a cutoff from, read for it alone."""
    if config.method == "time":
        cutoff = (read()
                  | "Timestamps" >> beam.Map(lambda batch: batch.times)
                  | "Cutoff" >> beam.CombineGlobally(
                      _TimestampQuantile(1.0 - config.eval_fraction)))
        return batches.time_eval_mask, (beam.pvalue.AsSingleton(cutoff),), cutoff
    no_cutoff = pipeline | "NoCutoff" >> beam.Create([None])
    if config.method == "user_time":
        user_cutoffs = (read()
                        | "UserTimestamps" >> beam.FlatMap(batches.user_times)
                        | "UserCutoffs" >> beam.CombinePerKey(
                            _UserTimeCutoff(config.eval_fraction)))
        return batches.user_time_eval_mask, (beam.pvalue.AsDict(user_cutoffs),), no_cutoff
    return batches.random_eval_mask, (config.seed, config.eval_fraction), no_cutoff


class _SplitBatches(beam.DoFn):
    """A batch of ratings -> its train rows and its eval rows, on outputs named so."""

    def __init__(self, eval_mask: Callable[..., np.ndarray]):
        self._eval_mask = eval_mask

    def process(self, batch: batches.RatingBatch, *side):
        evaluates = self._eval_mask(batch, *side)
        for name, rows in ((_TRAIN, ~evaluates), (_EVAL, evaluates)):
            if rows.any():
                yield beam.pvalue.TaggedOutput(name, batch.take(rows))


class _CountIds(beam.CombineFn):
    """Batches of ratings -> (ratings per user id, ratings per movie id)."""

    def create_accumulator(self) -> tuple[collections.Counter, collections.Counter]:
        return collections.Counter(), collections.Counter()

    def add_input(self, acc, batch: batches.RatingBatch):
        for total, counts in zip(acc, batches.id_counts(batch), strict=True):
            total.update(counts)
        return acc

    def merge_accumulators(self, accs):
        users, movies = self.create_accumulator()
        for more_users, more_movies in accs:
            users.update(more_users)
            movies.update(more_movies)
        return users, movies

    def extract_output(self, acc):
        return acc


class _ClaimRecorder:
    """A range tracker that remembers the last position claimed: the start of the record read."""

    def __init__(self, tracker):
        self._tracker = tracker
        self.last_claimed = -1

    def try_claim(self, position):
        claimed = self._tracker.try_claim(position)
        if claimed:
            self.last_claimed = position
        return claimed

    def __getattr__(self, name):
        return getattr(self._tracker, name)


class _LineBatches(textio._TextSource):  # Beam's text reader with one hook added
    """A text file as batches of lines: (byte offsets of the lines, the lines' bytes), at most
    batches.BATCH_LINES lines each, header skipped.

    Splittable and streaming like ReadFromText (its bundles are read in parallel), so a line's
    number is not known where it is read; its offset is, and names it exactly: the rejected rows'
    offsets become line numbers in one pass over the file (`_number_rejects`). Lines end in \n or
    \r\n, as for `ReadFromText`. Bytes, not text: a line that is not UTF-8 is a bad row, not a
    crash of the read. Batches, not lines: one Beam element per line cost more than the parse.
    """

    def __init__(self, path: str, batch_lines: int | None = None):
        super().__init__(path, 0, CompressionTypes.UNCOMPRESSED, True, coders.BytesCoder(),
                         skip_header_lines=1)
        self._batch_lines = batch_lines or batches.BATCH_LINES  # pickled with the source

    def read_records(self, file_name, range_tracker):
        tracker = _ClaimRecorder(range_tracker)
        offsets, lines = [], []
        for line in super().read_records(file_name, tracker):
            offsets.append(tracker.last_claimed)
            lines.append(line)
            if len(lines) == self._batch_lines:
                yield offsets, lines
                offsets, lines = [], []
        if lines:
            yield offsets, lines

    def default_output_coder(self):
        return coders.TupleCoder((coders.ListCoder(coders.VarIntCoder()),
                                  coders.ListCoder(coders.BytesCoder())))

    def output_type_hint(self):
        return beam.typehints.Tuple[beam.typehints.List[int], beam.typehints.List[bytes]]


def _number_rejects(rejects: list[tuple[int, str]], path: str):
    """(byte offset, message) of rejected ratings.csv lines -> '<path> line N: message', in
    line order, N counted from 1 (the header) by one streaming pass over the file."""
    rejects = sorted(rejects)
    line, scanned = 1, 0
    with tf.io.gfile.GFile(path, "rb") as f:
        for offset, message in rejects:
            while scanned < offset:
                chunk = f.read(min(_SCAN_CHUNK, offset - scanned))
                if not chunk:
                    break
                line += chunk.count(b"\n")
                scanned += len(chunk)
            yield f"{path} line {line}: {message}"


class _ParseRatings(beam.DoFn):
    """A batch of (offsets, ratings.csv lines) -> a RatingBatch of the good ones, and
    (offset, why) for each bad one on the REJECTED output.

    Each worker reads movies.csv itself in setup(), rather than receiving the movies pickled
    with the DoFn: it is small, and a pickled dict is re-sent for every bundle.
    """

    REJECTED = "rejected"

    def __init__(self, movies_path: str):
        self._movies_path = movies_path

    def setup(self):
        self._movie_ids = set(parsing.read_movies_file(self._movies_path)[0])
        self._sorted_ids = np.array(sorted(self._movie_ids), dtype=np.int64)

    def process(self, element: tuple[list[int], list[bytes]]):
        plain = batches.parse_plain(element[1], self._sorted_ids)
        if plain is not None:  # every line plain and valid: no rejects, one pass per column
            yield plain
            return
        good = []
        for offset, raw in zip(*element, strict=True):
            try:
                rating = self._parse(raw)
            except parsing.BadRowError as e:
                beam.metrics.Metrics.counter("movielens", "rejected_rows").inc()
                yield beam.pvalue.TaggedOutput(self.REJECTED, (offset, str(e)))
                continue
            if rating is not None:
                good.append(rating)
        if good:
            yield batches.RatingBatch.of(good)

    def _parse(self, raw: bytes) -> parsing.Rating | None:
        """One line's rating; None for a blank line."""
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise parsing.BadRowError(f"not UTF-8 text (row {raw!r})") from None
        if not line.strip():
            return None
        rating = parsing.parse_rating(line)
        if rating.movie_id not in self._movie_ids:
            raise parsing.BadRowError(
                f"field 'movieId': {rating.movie_id} is not in {parsing.MOVIES_FILE} "
                f"(row {line.rstrip()!r})")
        return rating


class _JoinToExample(beam.DoFn):
    """A batch of ratings -> for each, its serialized tf.Example joined with its movie and the
    activity buckets of its user and movie (from their numbers of train-split ratings)."""

    def __init__(self, movies_path: str, user_edges: tuple[int, ...],
                 movie_edges: tuple[int, ...]):
        self._movies_path = movies_path
        self._user_edges = user_edges
        self._movie_edges = movie_edges

    def setup(self):
        movies = parsing.read_movies_file(self._movies_path)[0]
        self._movie_bytes = {movie_id: parsing.movie_example(movie).SerializeToString()
                             for movie_id, movie in movies.items()}
        # One serialized feature per (feature, bucket), appended to each example: concatenated
        # messages parse as their merge (see parsing.serialize_joined).
        self._bucket_bytes = {
            key: [_bytes_feature_example(key, label)
                  for label in slicing.bucket_labels(edges)]
            for key, edges in ((features.USER_ACTIVITY, self._user_edges),
                               (features.MOVIE_POPULARITY, self._movie_edges))}

    def process(self, batch: batches.RatingBatch, counts: tuple[dict, dict]):
        user_counts, movie_counts = counts
        users, movies = (self._bucket_bytes[features.USER_ACTIVITY],
                         self._bucket_bytes[features.MOVIE_POPULARITY])
        for user_id, movie_id, rating, timestamp in batch.rows():
            user_bucket = bisect.bisect_right(self._user_edges, user_counts.get(user_id, 0))
            movie_bucket = bisect.bisect_right(self._movie_edges, movie_counts.get(movie_id, 0))
            yield (parsing.rating_bytes(user_id, movie_id, rating, timestamp)
                   + self._movie_bytes[movie_id] + users[user_bucket] + movies[movie_bucket])


def _bytes_feature_example(key: str, value: str) -> bytes:
    return tf.train.Example(features=tf.train.Features(feature={key: tf.train.Feature(
        bytes_list=tf.train.BytesList(value=[value.encode()]))})).SerializeToString()


class Executor(base_example_gen_executor.BaseExampleGenExecutor):
    """Reads `<input_base>/ratings.csv` and `movies.csv`; writes `train` and `eval` splits.

    Execution parameters: those of FileBasedExampleGen plus the fields of `SplitConfig`.
    Besides the splits, the Examples artifact folder gets `rejected_rows.txt` (every skipped row and
    why) and `split_summary.json` (counts and the time cutoff).
    """

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        # Never called: GenerateExamplesByBeam is overridden because the split needs the whole
        # dataset (the time cutoff is a quantile over all ratings).
        raise NotImplementedError

    def GenerateExamplesByBeam(
        self, pipeline: beam.Pipeline, exec_properties: dict[str, Any]
    ) -> dict[str, beam.PCollection]:
        split_names = _split_names(exec_properties)
        if len(split_names) != 2:
            raise ValueError(
                f"MovieLensExampleGen writes two splits (train, eval), got {split_names}")
        config = SplitConfig.from_exec_properties(exec_properties)
        input_base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
        paths = ratings_paths(exec_properties)
        movies_path = os.path.join(input_base, parsing.MOVIES_FILE)
        for path in (*paths, movies_path):
            if not tf.io.gfile.exists(path):
                raise parsing.MissingInputError(
                    f"{path} not found: the ExampleGen expects a MovieLens 'latest'-format folder "
                    f"with {parsing.RATINGS_FILE} and {parsing.MOVIES_FILE}"
                )
        for path in paths:
            with tf.io.gfile.GFile(path, "rb") as f:
                parsing.check_header(f.readline().decode("utf-8-sig").strip().split(","),
                                     parsing.RATINGS_HEADER, path)
        if len(paths) > 1 or exec_properties.get(SPAN_WINDOW_KEY):
            _LOG.info("Reading spans: %s", ", ".join(paths))
        movies, movie_rejects = parsing.read_movies_file(movies_path)
        _LOG.info("Read %d movies from %s (%d rows rejected)", len(movies), movies_path,
                  len(movie_rejects))
        n_movies = len(movies)
        del movies  # workers read their own copy (see _ParseRatings)

        # Above STREAMING_READS_ABOVE_BYTES the ratings are read three times: for the split's
        # cutoff, for the train split's counts (which need the cutoff), and for the examples
        # (which need both). A stage that takes a side input computed from its own main input
        # makes the DirectRunner hold that input whole; separate reads stream, at the cost of
        # two more parses (docs/benchmarks.md, "ExampleGen memory").
        size = sum(tf.io.gfile.stat(path).length for path in paths)
        streaming = size > STREAMING_READS_ABOVE_BYTES
        _LOG.info("Reading %d MB of ratings %s", size // 10**6,
                  "three times (cutoff, counts, examples)" if streaming else "once")
        parsed, ratings = _read(pipeline, paths, movies_path, "")

        def ratings_for(stage: str) -> beam.PCollection:
            """The ratings a side input is computed from: a read of their own if streaming."""
            return _read(pipeline, paths, movies_path, stage)[1] if streaming else ratings

        rule, side, cutoff = _split_rule(pipeline, config, lambda: ratings_for("ForCutoff"))
        splits = ratings | "Split" >> beam.ParDo(_SplitBatches(rule), *side).with_outputs(
            _TRAIN, _EVAL)
        counted = (ratings_for("ForCounts") | "SplitForCounts" >> beam.ParDo(
            _SplitBatches(rule), *side).with_outputs(_TRAIN, _EVAL) if streaming else splits)

        # All rejected ratings in one list to number their lines: few by design (the run fails
        # beyond max_rejected_fraction of the rows); a file of garbage fails at its header.
        rating_rejects = [
            p[_ParseRatings.REJECTED]
            | f"RejectsToList{i or ''}" >> beam.combiners.ToList()
            | f"NumberRejects{i or ''}" >> beam.FlatMap(_number_rejects, path)
            for i, (p, path) in enumerate(zip(parsed, paths, strict=True))]
        rejected = (
            (pipeline | "MovieRejects" >> beam.Create(movie_rejects), *rating_rejects)
            | "AllRejects" >> beam.Flatten()
        )
        output_dir = exec_properties["_examples_uri"]
        _ = rejected | "WriteRejects" >> beam.io.WriteToText(
            os.path.join(output_dir, REJECTED_FILE), shard_name_template="")
        counts = [
            splits[split] | f"Count{name}" >> beam.Map(len) | f"Sum{name}" >> beam.CombineGlobally(
                sum) for name, split in (("Train", _TRAIN), ("Eval", _EVAL))
        ] + [rejected | "CountRejected" >> beam.combiners.Count.Globally()]
        summary_base = {"method": config.method, "eval_fraction": config.eval_fraction,
                        "seed": config.seed, "movies": n_movies, "ratings_files": paths,
                        "movie_rows_rejected": len(movie_rejects)}
        _ = (
            pipeline
            | "Summary" >> beam.Create([None])
            | "FillSummary" >> beam.Map(
                lambda _, train, eval_, rej, cut: json.dumps({
                    **summary_base, "cutoff_timestamp": cut,
                    "examples": {split_names[0]: train, split_names[1]: eval_},
                    "rejected_rows": rej}),
                *(beam.pvalue.AsSingleton(c) for c in counts), beam.pvalue.AsSingleton(cutoff))
            | "WriteSummary" >> beam.io.WriteToText(
                os.path.join(output_dir, SUMMARY_FILE), shard_name_template="")
        )
        # Activity of users and movies, from the train split only: what was known at training.
        id_counts = beam.pvalue.AsSingleton(
            counted[_TRAIN] | "CountPerId" >> beam.CombineGlobally(_CountIds()))
        join = _JoinToExample(movies_path, *_slice_edges(exec_properties))
        return {
            split_names[0]: splits[_TRAIN] | "ToExampleTrain" >> beam.ParDo(join, id_counts),
            split_names[1]: splits[_EVAL] | "ToExampleEval" >> beam.ParDo(join, id_counts),
        }

    def Do(self, input_dict, output_dict, exec_properties) -> None:
        examples = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.EXAMPLES_KEY])
        exec_properties = dict(exec_properties, _examples_uri=examples.uri)
        self._log_startup(input_dict, output_dict, exec_properties)
        self.write_splits(examples, exec_properties)

        with tf.io.gfile.GFile(os.path.join(examples.uri, SUMMARY_FILE)) as f:
            summary = json.loads(f.read())
        config = SplitConfig.from_exec_properties(exec_properties)
        total = sum(summary["examples"].values())
        rejected = summary["rejected_rows"]
        rating_rejects = rejected - summary["movie_rows_rejected"]
        rejects_path = os.path.join(examples.uri, REJECTED_FILE)
        if summary["cutoff_timestamp"] is not None:
            examples.set_float_custom_property("split_cutoff_timestamp",
                                               summary["cutoff_timestamp"])
        _LOG.info("MovieLens examples: %s; %d rows rejected (listed in %s)",
                  ", ".join(f"{k}={v}" for k, v in summary["examples"].items()), rejected,
                  rejects_path)
        paths = summary.get("ratings_files") or ratings_paths(exec_properties)
        ratings_path = ", ".join(paths)
        first = first_rejects(rejects_path, _MAX_LOGGED_REJECTS) if rejected else []
        for message in first:
            _LOG.warning("Skipping bad row: %s", message)
        if total == 0:
            raise parsing.InputDataError(
                f"{ratings_path} has no usable rating ({rating_rejects} rows rejected, listed in "
                f"{rejects_path})")
        if rating_rejects > config.max_rejected_fraction * (total + rating_rejects):
            lines = [line if len(paths) == 1 else f"{path} {line}"
                     for path, line, _ in map(_line_of, first) if path in paths]
            shown = ", ".join(map(str, lines[:_NAMED_IN_ERROR]))
            more = (f" and {rating_rejects - len(lines[:_NAMED_IN_ERROR])} more"
                    if rating_rejects > len(lines[:_NAMED_IN_ERROR]) else "")
            raise parsing.InputDataError(
                f"{rating_rejects} of {total + rating_rejects} rows of {ratings_path} could not "
                f"be used (limit: {config.max_rejected_fraction:.1%}): lines {shown}{more}. "
                f"Each line and why is in {rejects_path}; fix or delete those lines (or raise "
                f"configs.SPLIT.max_rejected_fraction in pipeline/configs.py).")

    def write_splits(self, examples, exec_properties: dict[str, Any]) -> None:
        """BaseExampleGenExecutor.Do's writing, without the Reshuffle of TFX's WriteSplit: each
        split's serialized records straight to `<split>/data_tfrecord-*.gz`, and the split names,
        payload and file format recorded on the Examples artifact as the base class records them."""
        input_config = proto_utils.json_to_proto(
            exec_properties[standard_component_specs.INPUT_CONFIG_KEY], example_gen_pb2.Input())
        output_config = proto_utils.json_to_proto(
            exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY], example_gen_pb2.Output())
        examples.split_names = artifact_utils.encode_split_names(
            utils.generate_output_split_names(input_config, output_config))
        with self._make_beam_pipeline() as pipeline:
            for name, records in self.GenerateExamplesByBeam(pipeline, exec_properties).items():
                _ = records | f"WriteSplit[{name}]" >> beam.io.WriteToTFRecord(
                    os.path.join(artifact_utils.get_split_uri([examples], name),
                                 write_split.DEFAULT_FILE_NAME),
                    file_name_suffix=".gz")
        payload_format = exec_properties.get(standard_component_specs.OUTPUT_DATA_FORMAT_KEY)
        if payload_format:
            examples_utils.set_payload_format(examples, payload_format)
        file_format = exec_properties.get(standard_component_specs.OUTPUT_FILE_FORMAT_KEY)
        if file_format:
            examples_utils.set_file_format(examples, write_split.to_file_format_str(file_format))


def _line_of(message: str) -> tuple[str, int, str]:
    """'<path> line N: why' -> (path, N, why)."""
    where, _, why = message.partition(": ")
    path, _, line = where.rpartition(" line ")
    return path, int(line) if line.isdigit() else 0, why


def first_rejects(rejects_path: str, n: int) -> list[str]:
    """The n first lines of rejected_rows.txt by (file, line number), read as a stream."""
    with tf.io.gfile.GFile(rejects_path) as f:
        return heapq.nsmallest(n, (line.rstrip("\n") for line in f if line.strip()),
                               key=lambda m: _line_of(m)[:2])


def _slice_edges(exec_properties: dict[str, Any]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    return tuple(
        slicing.check_edges(json.loads(exec_properties[key]), key)
        for key in (USER_ACTIVITY_EDGES_KEY, MOVIE_POPULARITY_EDGES_KEY))


def _split_names(exec_properties: dict[str, Any]) -> list[str]:
    input_config = example_gen_pb2.Input()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY],
                              input_config)
    output_config = example_gen_pb2.Output()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY],
                              output_config)
    return utils.generate_output_split_names(input_config, output_config)
