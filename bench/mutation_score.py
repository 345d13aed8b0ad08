"""Mutation scores per module from mutmut's results and bench/mutations.py's, into the docs.

    .venv/bin/python -m bench.mutation_score [--target 0.9]

The last step of `make mutation`: reads mutmut's results (mutants/<file>.meta, one exit code per
mutant) for each file of [tool.mutmut] only_mutate, and the hand-written mutations' results
(mutation-logs/hand_written.json), prints every surviving mutant with its diff, and rewrites the
"Mutation testing" section of docs/benchmarks.md (bench/results/mutation.json holds the numbers).

Score of a module = killed / (mutants - equivalent - timeout - not checked): a mutant no fast
test executes ("no tests") counts as surviving; a timeout (usually a hung mutant, but also
TensorFlow's start-up in a forked process outrunning a tight time limit) and a mutant a stopped
run did not reach ("not checked", the table then says PARTIAL) are left out. Equivalent mutants
are the survivors listed in EQUIVALENT below, each with the reason no test can tell it from the
code; they are matched by their diff, not by mutmut's numbering (which changes with the code).

Exit status 1 when a module scores below --target, a hand-written mutation survived, or a result
is missing.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import platform
import sys
from pathlib import Path

from bench import docs

REPO = Path(__file__).resolve().parent.parent
LOGS = REPO / "mutation-logs"
RESULTS = REPO / "bench" / "results" / "mutation.json"


@dataclasses.dataclass(frozen=True)
class Equivalent:
    file: str
    removed: str  # the mutated line(s) of the code, stripped, joined by " / "
    added: str  # the mutant's line(s)
    reason: str


# Survivors that change no behaviour. The list is checked against every run: an entry that no
# longer matches a survivor is reported (the code changed, or a test now kills it).
_CODEC = "Python's codec names are case-insensitive: the same codec"
EQUIVALENT: list[Equivalent] = [
    Equivalent("components/movielens_example_gen/parsing.py",
               'features.GENRES: _bytes([g.encode("utf-8") for g in movie.genres]),',
               'features.GENRES: _bytes([g.encode("UTF-8") for g in movie.genres]),', _CODEC),
    Equivalent("components/movielens_example_gen/parsing.py",
               'features.TITLE: _bytes([movie.title.encode("utf-8")]),',
               'features.TITLE: _bytes([movie.title.encode("UTF-8")]),', _CODEC),
    Equivalent("components/movielens_example_gen/parsing.py",
               'return iter(io.StringIO(data.decode("utf-8-sig"), newline=""))',
               'return iter(io.StringIO(data.decode("UTF-8-SIG"), newline=""))', _CODEC),
    Equivalent("pipeline/run_lock.py",
               'text = os.read(fd, 64).decode("ascii", "replace").strip()',
               'text = os.read(fd, 64).decode("ASCII", "replace").strip()', _CODEC),
    Equivalent("pipeline/run_lock.py",
               'text = os.read(fd, 64).decode("ascii", "replace").strip()',
               'text = os.read(fd, 65).decode("ascii", "replace").strip()',
               "the file holds what hold() wrote, a PID and a newline: at most 8 bytes "
               "(pid_max is 4194304), so 64 or 65 bytes read the same text"),
    *(Equivalent("components/atomic_pusher.py",
                 "self._log_startup(input_dict, output_dict, exec_properties)",
                 f"self._log_startup({args})",
                 "TFX's BaseExecutor._log_startup deletes its arguments unread")
      for args in ("None, output_dict, exec_properties", "input_dict, None, exec_properties",
                   "input_dict, output_dict, None")),
    Equivalent("components/atomic_pusher.py",
               'digest.update(os.path.relpath(file_path, path).encode() + b"\\0")',
               'digest.update(os.path.relpath(file_path, path).encode() + b"XX\\0XX")',
               "the digest is only compared with another tree_digest, and either separator "
               "still ends each file name unambiguously (names hold no NUL; the content hash "
               "that follows is 32 bytes)"),
    Equivalent("components/atomic_pusher.py",
               'path = os.path.join(base_directory, name.rstrip("/"))',
               'path = os.path.join(base_directory, name.rstrip("XX/XX"))',
               "the name matched the staging pattern, so it ends in a digit before any slash: "
               "stripping X as well strips nothing more"),
    Equivalent("components/atomic_pusher.py",
               "if first is not None and second is not None:",
               "if first is not None or second is not None:",
               "when only one folder has an identity file their file trees differ (that file), "
               "so tree_digest says different, as the identities' comparison with None does"),
    *(Equivalent("components/atomic_pusher.py",
                 "fileio.rename(staging, serving_path, overwrite=False)",
                 f"fileio.rename(staging, serving_path, {arg})",
                 "fileio.rename's overwrite defaults to False and is only tested for truth")
      for arg in ("overwrite=None", "")),
    Equivalent("components/evaluation/results.py", 'baseline = evaluation.baseline or ""',
               'baseline = evaluation.baseline or "XXXX"',
               "without a baseline model any name finds no rule: RULES has neither, and the "
               "ValueError raised next does not show it"),
    *(Equivalent("components/evaluation/results.py",
                 'for per_slice in tfma.load_metrics(uri, output_file_format=""):',
                 f"for per_slice in tfma.load_metrics(uri, {arg}):",
                 "the Evaluator writes metrics-00000-of-00001.tfrecord (TFMA's default writer), "
                 "which the pattern metrics* (\"\" or None) and TFMA's default, "
                 "metrics*.tfrecord, both match, and all three parse TFRecords")
      for arg in ("output_file_format=None", "")),
    *(Equivalent("components/evaluation/results.py", "eval_config=eval_config))", added,
                 "has_thresholds only asks whether any threshold exists: the eval_config adds "
                 "model names to the thresholds' keys, not thresholds")
      for added in ("eval_config=None))", "))")),
    # serving/tensors.py
    *(Equivalent("serving/tensors.py", "wide = np.asarray(values, dtype=np.int64)",
                 f"wide = np.asarray(values, {dtype})",
                 "int_val and half_val hold Python ints, from which numpy infers int64 on the "
                 "64-bit Linux hosts this runs on (its default integer)")
      for dtype in ("dtype=None", "")),
    *(Equivalent("serving/tensors.py",
                 'return {dict: "Object", list: "Array", str: "String", bool: "Boolean",',
                 f'return {{dict: "Object", list: "{array}", str: "String", bool: "Boolean",',
                 "no list reaches _json_type: _flatten refuses a list where a value belongs "
                 "before any type check")
      for array in ("XXArrayXX", "array", "ARRAY")),
    *(Equivalent("serving/tensors.py",
                 "return np.array(flat, dtype=object).reshape(array.shape).tolist() if "
                 "array.ndim > 1 else flat",
                 f"return np.array(flat, dtype=object).reshape(array.shape).tolist() if {cond} "
                 "else flat",
                 "for one dimension an object array of the list's items gives the same list "
                 "back (zero dimensions returned before)")
      for cond in ("(array.ndim > 1) or True", "array.ndim >= 1")),
    *(Equivalent("serving/tensors.py", f'{line} in "{kinds}"{end}',
                 f'{line} in "XX{kinds}XX"{end}',
                 "a numpy dtype's kind is one character and X is no kind: the same test")
      for line, kinds, end in [("if dtype.kind", "OSU", ":"), ("if array.dtype.kind", "OSU", ":"),
                               ("elif np_dtype.kind", "iu", ":"),
                               ("if np_dtype.kind", "iu", " and flat:")]),
    *(Equivalent("serving/tensors.py",
                 "proto.tensor_content = (array if array.dtype == little else "
                 "array.astype(little)", f"proto.tensor_content = {added}",
                 "little-endian hosts only (x86-64, ARM64): every dtype data_type accepts is "
                 "native, so little-endian, and a big-endian array is refused before; "
                 "converting or not gives the same bytes")
      for added in ("(array if (array.dtype == little) and False else array.astype(little)",
                    "(array if (array.dtype == little) or True else array.astype(little)",
                    "(array if array.dtype != little else array.astype(little)",
                    "(array if array.dtype == little else array.astype(None)")),
    *(Equivalent("serving/tensors.py",
                 "return (data if dtype.isnative and data.dtype == dtype else "
                 "data.astype(dtype)", f"return {added}",
                 "little-endian hosts only (x86-64, ARM64): the little-endian view is already "
                 "of the native dtype, so the same values whichever branch; a copy instead of a "
                 "read-only view at most, which nothing writes to")
      for added in ("(data if (dtype.isnative and data.dtype == dtype) and False else "
                    "data.astype(dtype)",
                    "(data if (dtype.isnative and data.dtype == dtype) or True else "
                    "data.astype(dtype)",
                    "(data if dtype.isnative or data.dtype == dtype else data.astype(dtype)",
                    "(data if dtype.isnative and data.dtype != dtype else data.astype(dtype)",
                    "(data if dtype.isnative and data.dtype == dtype else data.astype(None)")),
    # serving/batching.py
    Equivalent("serving/batching.py", "self.outputs: Arrays | None = None",
               'self.outputs: Arrays | None = ""',
               "a request's outputs are read only once it finished without an error, after "
               "its outputs were set: the initial value is never read"),
    Equivalent("serving/batching.py", "self.finished = False", "self.finished = None",
               "finished is only ever tested for truth, and None is as false as False"),
    Equivalent("serving/batching.py",
               "self.batchable = False  # outputs not batched along dimension 0",
               "self.batchable = None  # outputs not batched along dimension 0",
               "batchable is only ever tested for truth, and None is as false as False"),
    Equivalent("serving/batching.py", "for k in batch[0].inputs}", "for k in batch[1].inputs}",
               "every request a Batcher gets has the same input names, its signature's "
               "(model_manager's check_inputs refuses any other set before the batcher)"),
    Equivalent("components/evaluation/results.py", "interval = evaluation.interval(key, RMSE)",
               "interval = evaluation.interval(key, )",
               "Evaluation.interval's metric defaults to RMSE"),
    Equivalent("serving/batching.py", "self._busy = False", "self._busy = None",
               "_busy is only ever read as `not self._busy`, and None is as false as False"),
    *(Equivalent("models/ranking_metrics.py",
                 "for u, (items, wanted) in enumerate(zip(recommended, relevant, strict=True)):",
                 "for u, (items, wanted) in enumerate(zip(recommended, relevant, "
                 f"{strict})):",
                 "per_user compares the two lengths just before and raises on a difference, so "
                 "zip's strict check never fires")
      for strict in ("strict=None", "", "strict=False")),
    Equivalent("models/ranking_metrics.py",
               "discounts = 1.0 / np.log2(np.arange(2, k + 2))",
               "discounts = 2.0 / np.log2(np.arange(2, k + 2))",
               "NDCG divides a sum of discounts by a sum of the same discounts (the ideal "
               "list's): a constant factor cancels, and nothing else reads them"),
    Equivalent("models/ranking_metrics.py",
               'return {m: float(np.mean(v if mask is None else v[mask])) if len(v) else '
               'float("nan")',
               'return {m: float(np.mean(v if (mask is None) and False else v[mask])) if len(v) '
               'else float("nan")',
               "v[None] is v with a new leading axis: the same mean"),
    Equivalent("models/ranking_metrics.py",
               'return {m: float(np.mean(v if mask is None else v[mask])) if len(v) else '
               'float("nan")',
               'return {m: float(np.mean(v if mask is None else v[mask])) if len(v) else '
               'float("NAN")',
               'float() parses "nan" case-insensitively: the same NaN'),
    Equivalent("components/evaluation/topk.py",
               'settings: TopKSettings, uri: str = "", batch_size: int = 256) -> TopKEvaluation:',
               'settings: TopKSettings, uri: str = "", batch_size: int = 257) -> TopKEvaluation:',
               "the batch size of the recommend calls: the same lists in other batches"),
    Equivalent("components/evaluation/topk.py",
               "def recommend_lists(model_dir: str, user_ids: np.ndarray, k: int, "
               "batch_size: int = 256",
               "def recommend_lists(model_dir: str, user_ids: np.ndarray, k: int, "
               "batch_size: int = 257",
               "the batch size of the recommend calls: the same lists in other batches"),
    *(Equivalent("components/evaluation/topk.py", removed, added,
                 "every list is exactly k wide (recommend_lists and popularity_lists make "
                 "[U, k]), so coverage's items[:None] reads the same k entries as items[:k]")
      for removed, added in [
          ("metrics = {m: score_lists(lists[m], per_user[m], users, k, catalogue_size, edges)",
           "metrics = {m: score_lists(lists[m], per_user[m], users, None, catalogue_size, "
           "edges)"),
          ("COVERAGE: ranking_metrics.coverage(lists[mask], k, catalogue_size)}",
           "COVERAGE: ranking_metrics.coverage(lists[mask], None, catalogue_size)}")]),
    *(Equivalent("components/evaluation/topk.py", f"{line}, np.int64)", f"{line}, {dtype})",
                 "numpy infers int64 from Python ints on the 64-bit Linux hosts this runs on "
                 "(its default integer)")
      for line in ("lists = np.full((len(seen), k), PAD", "lists = np.full((len(user_ids), k), PAD",
                   "relevant = np.array([len(r) for r in users.relevant]")
      for dtype in ("None", "")),
    *(Equivalent("components/evaluation/topk.py",
                 "k=tf.fill([len(batch)], tf.constant(k, tf.int32)))[contract.MOVIE_IDS]",
                 f"k=tf.fill([len(batch)], tf.constant(k, {dtype})))[contract.MOVIE_IDS]",
                 "k is a Python int (TopKSettings.topk_k), from which tf.constant infers int32")
      for dtype in ("None", "")),
    Equivalent("components/evaluation/topk.py", "batch_size: int = 16384) -> Ratings:",
               "batch_size: int = 16385) -> Ratings:",
               "the batch size of reading: the same ratings in the same order"),
    Equivalent("components/evaluation/topk.py",
               'return self.metrics.get(model, {}).get(bucket, {}).get(metric, float("nan"))',
               'return self.metrics.get(model, {}).get(bucket, {}).get(metric, float("NAN"))',
               'float() parses "nan" case-insensitively: the same NaN'),
]


def status_of(exit_code) -> str:
    from mutmut.stats import status_by_exit_code

    return status_by_exit_code[exit_code]


def changed_lines(diff: str) -> tuple[str, str]:
    """The removed and the added lines of a unified diff, stripped, each joined by " / "."""
    lines = [line for line in diff.splitlines()
             if line[:1] in "-+" and not line.startswith(("---", "+++"))]
    return (" / ".join(line[1:].strip() for line in lines if line[0] == "-"),
            " / ".join(line[1:].strip() for line in lines if line[0] == "+"))


def equivalent_reason(file: str, diff: str) -> str | None:
    removed, added = changed_lines(diff)
    for e in EQUIVALENT:
        if e.file == file and e.removed == removed and e.added == added:
            return e.reason
    return None


def mutmut_results() -> dict[str, list[dict]]:
    """{file: [{name, status, diff (survivors only)}]} for each file mutmut mutates."""
    from mutmut.configuration import config
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    out = {}
    for file in config().only_mutate:
        meta = REPO / "mutants" / (file + ".meta")
        if not meta.exists():
            raise SystemExit(f"no mutmut results for {file} ({meta}): run `make mutation`")
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        rows = []
        for name, code in sorted(codes.items(), key=lambda kv: _natural(kv[0])):
            row = {"name": name, "status": status_of(code)}
            if row["status"] not in ("killed", "timeout", "not checked"):
                row["diff"] = get_diff_for_mutant(name, path=file)
            rows.append(row)
        out[file] = rows
    return out


def _natural(name: str) -> tuple[str, int]:
    stem, _, number = name.rpartition("__mutmut_")
    return stem, int(number) if number.isdigit() else 0


def score(rows: list[dict], file: str) -> dict:
    counts = {"mutants": len(rows), "killed": 0, "timeout": 0, "survived": 0, "no tests": 0,
              "not checked": 0, "equivalent": 0, "other": 0}
    survivors, equivalents = [], []
    for row in rows:
        status = row["status"]
        if status in ("killed", "timeout", "not checked"):
            counts[status] += 1
            continue
        reason = equivalent_reason(file, row["diff"])
        if reason is not None:
            counts["equivalent"] += 1
            equivalents.append({**row, "reason": reason})
            continue
        counts[status if status in ("survived", "no tests") else "other"] += 1
        survivors.append(row)
    judged = (counts["mutants"] - counts["equivalent"] - counts["timeout"]
              - counts["not checked"])
    counts["judged"] = judged
    counts["score"] = counts["killed"] / judged if judged else 1.0
    return {"counts": counts, "survivors": survivors, "equivalents": equivalents}


def read_times() -> dict:
    """Start and end of the mutmut run, with the load average, as `make mutation` noted them."""
    def read(name):
        path = LOGS / name
        if not path.exists():
            return None, None
        seconds, load = path.read_text().splitlines()[:2]
        return int(seconds), load
    start, load_start = read("start")
    end, load_end = read("mutmut-end")
    return {"mutmut_seconds": None if start is None or end is None else end - start,
            "load_start": load_start, "load_end": load_end,
            "date": datetime.datetime.fromtimestamp(start or 0, datetime.timezone.utc)
            .strftime("%Y-%m-%d %H:%M UTC") if start else None}


def markdown(scores: dict, hand: dict, times: dict, target: float) -> str:
    c = [f"`make mutation` ({times['date']}, commit {docs.git_commit()}, "
         f"{docs.cpu_model()}, {_cores()} cores; load average {times['load_start']} at the start, "
         f"{times['load_end']} after mutmut). mutmut "
         f"{_version()} over the modules below, each mutant run against the fast tests that "
         f"execute the mutated function: {_minutes(times['mutmut_seconds'])}; the "
         f"{len(hand['mutations'])} hand-written TensorFlow mutations of bench/mutations.py: "
         f"{_minutes(hand['seconds'])}.", "",
         f"Score = killed / (mutants - equivalent - timeout - not checked); a mutant no fast "
         f"test executes (\"no tests\") counts as surviving; target >= {target:.0%} per module."
         + (" **PARTIAL**: the run was stopped before it reached every mutant (\"not "
            "checked\")." if any(s["counts"]["not checked"] for s in scores.values()) else ""),
         "", "| module | mutants | killed | survived | no tests | equivalent | timeout | "
         "not checked | score |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for file, s in scores.items():
        n = s["counts"]
        score = f"{n['score']:.1%}" if n["judged"] else "n/a"
        c.append(f"| `{file}` | {n['mutants']} | {n['killed']} | {n['survived'] + n['other']} "
                 f"| {n['no tests']} | {n['equivalent']} | {n['timeout']} | "
                 f"{n['not checked']} | {score} |")
    caught = sum(m["caught"] for m in hand["mutations"])
    c += ["", f"Hand-written mutations of the TensorFlow code (bench/mutations.py): {caught} of "
          f"{len(hand['mutations'])} caught.", "",
          "| mutation | file | the bug | caught by | caught |", "|---|---|---|---|---|"]
    for m in hand["mutations"]:
        tests = ", ".join(f"`{t.split('::')[-1]}`" for t in m["tests"])
        why = m["why"].replace("|", "\\|")
        c.append(f"| {m['name']} | `{m['file']}` | {why} | {tests} | "
                 f"{'yes' if m['caught'] else '**no**'} |")
    equivalents = [(file, e) for file, s in scores.items() for e in s["equivalents"]]
    c += ["", "Equivalent mutants (they change no behaviour a caller can see):", ""]
    if not equivalents:
        c.append("none.")
    for file, e in equivalents:
        removed, added = changed_lines(e["diff"])
        c.append(f"- `{file}` `{removed}` -> `{added}`: {e['reason']}")
    survivors = [(file, r) for file, s in scores.items() for r in s["survivors"]
                 if r["status"] != "no tests"]
    c += ["", "Surviving mutants that change behaviour (each needs a test):", ""]
    if not survivors:
        c.append("none.")
    for file, s in scores.items():
        if s["counts"]["no tests"]:
            c.append(f"- `{file}`: {s['counts']['no tests']} mutants no fast test executes")
    for file, r in survivors:
        removed, added = changed_lines(r["diff"])
        c.append(f"- `{file}` ({r['status']}) `{removed}` -> `{added}`")
    return "\n".join(c)


def _cores() -> int:
    import os

    return os.cpu_count() or 0


def _version() -> str:
    from importlib.metadata import version

    return version("mutmut")


def _minutes(seconds) -> str:
    return "unknown" if seconds is None else f"{seconds / 60:.0f} min"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", type=float, default=0.9)
    parser.add_argument("--no-docs", action="store_true", help="print only")
    args = parser.parse_args(argv)
    scores = {file: score(rows, file) for file, rows in mutmut_results().items()}
    hand_path = LOGS / "hand_written.json"
    hand = (json.loads(hand_path.read_text()) if hand_path.exists()
            else {"seconds": None, "mutations": []})
    times = read_times()
    failed = False
    for file, s in scores.items():
        n = s["counts"]
        print(f"{file:48} {n['score']:6.1%}  ({n['killed']} killed of {n['judged']}; "
              f"{n['equivalent']} equivalent, {n['timeout']} timeouts, {n['not checked']} not "
              "checked)")
        for r in s["survivors"]:
            print(f"  {r['status']}: {r['name']}\n" + "\n".join(
                "    " + line for line in r["diff"].splitlines()))
        failed |= n["score"] < args.target
    matched = {(f, *changed_lines(e["diff"])) for f, s in scores.items() for e in s["equivalents"]}
    for e in EQUIVALENT:
        if (e.file, e.removed, e.added) not in matched:
            print(f"note: the equivalent mutant {e.file} {e.removed!r} -> {e.added!r} was not "
                  "among this run's survivors")
    if not hand["mutations"]:
        print(f"no hand-written results ({hand_path}): run `.venv/bin/python -m bench.mutations`")
        failed = True
    failed |= not all(m["caught"] for m in hand["mutations"])
    if not args.no_docs:
        payload = {"date": times["date"], "commit": docs.git_commit(), "machine": {
            "cpu": docs.cpu_model(), "cores": _cores(), "python": platform.python_version()},
            "times": times, "target": args.target,
            "modules": {f: s["counts"] for f, s in scores.items()},
            "equivalent": {f: [changed_lines(e["diff"]) for e in s["equivalents"]]
                           for f, s in scores.items()},
            # Mutants no test executes are counted in "modules", not listed.
            "survivors": {f: [{"name": r["name"], "status": r["status"], "diff": r["diff"]}
                              for r in s["survivors"] if r["status"] != "no tests"]
                          for f, s in scores.items()},
            "hand_written": hand}
        docs.write_results(RESULTS, payload, "mutation", markdown(scores, hand, times, args.target),
                           heading="## Mutation testing (make mutation)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
