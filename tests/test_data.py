"""core/data/ on real small files: encodings, delimiters, column choice, normalisation, bad input, splits."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from core.data import (
    DataError,
    LabeledDataset,
    Limits,
    dataset_from_frame,
    detect_columns,
    few_shot_split,
    k_shot,
    load_dataset,
    load_texts,
    read_table,
    split_dataset,
)

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"


def write(tmp_path: Path, data: bytes, name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def csv_bytes(rows: list[tuple[str, str]], header: str = "text,label") -> bytes:
    lines = [header] + [f'"{t}",{y}' for t, y in rows]
    return ("\n".join(lines) + "\n").encode("utf-8")


def balanced(n_per_label: dict[str, int]) -> LabeledDataset:
    """A dataset with the given number of rows per label; text i is unique so parts can be compared."""
    rows = [(f"row {label} {i}", label) for label, n in n_per_label.items() for i in range(n)]
    df = pd.DataFrame(rows, columns=["text", "label"])
    return dataset_from_frame(df, text_col="text", label_col="label")


def assert_one_line_error(err: pytest.ExceptionInfo, *words: str) -> None:
    message = str(err.value)
    assert "\n" not in message and "Traceback" not in message
    for word in words:
        assert word.lower() in message.lower(), f"{word!r} not in {message!r}"


# ---------------------------------------------------------------------------------------------------- reading


def test_utf8_bom_is_not_part_of_the_first_column_name(tmp_path):
    path = write(tmp_path, b"\xef\xbb\xbftext,label\nhello there,pos\nawful,neg\n")
    ds = load_dataset(path)
    assert ds.text_col == "text" and ds.label_col == "label"
    assert ds.texts == ["hello there", "awful"]
    assert ds.warnings == ()


def test_latin1_file_is_decoded_with_a_warning(tmp_path):
    path = write(tmp_path, "text,label\ncafé crème,pos\nnaïve plot,neg\n".encode("latin-1"))
    ds = load_dataset(path)
    assert ds.texts == ["café crème", "naïve plot"]
    assert any("not valid UTF-8" in w for w in ds.warnings)


def test_semicolon_file_with_commas_inside_texts(tmp_path):
    path = write(tmp_path, b"text;label\ngood, very good;pos\nbad, very bad;neg\n")
    df = read_table(path)
    assert list(df.columns) == ["text", "label"]
    assert df["text"].tolist() == ["good, very good", "bad, very bad"]


def test_tab_file(tmp_path):
    path = write(tmp_path, b"text\tlabel\nfirst; text, here\tpos\nsecond|text\tneg\n")
    ds = load_dataset(path)
    assert ds.texts == ["first; text, here", "second|text"]
    assert ds.label_names == ("neg", "pos")


def test_pipe_file(tmp_path):
    df = read_table(write(tmp_path, b"text|label\na, b|x\nc; d|y\n"))
    assert df.values.tolist() == [["a, b", "x"], ["c; d", "y"]]


def test_quoted_newline_stays_in_one_field_and_is_collapsed(tmp_path):
    path = write(tmp_path, b'text,label\n"line one\nline two, still",pos\nshort,neg\n')
    assert read_table(path)["text"].tolist() == ["line one\nline two, still", "short"]
    assert load_dataset(path).texts == ["line one line two, still", "short"]


def test_bytes_and_file_objects_are_sources(tmp_path):
    data = b"text,label\na,x\nb,y\n"
    assert len(load_dataset(data)) == 2
    with write(tmp_path, data).open("rb") as fh:
        assert load_dataset(fh).texts == ["a", "b"]


def test_values_are_strings_not_numbers(tmp_path):
    df = read_table(write(tmp_path, b"text,label,score\n007,1,3.50\nabc,0,NA\n"))
    assert df["text"].tolist() == ["007", "abc"]
    assert df["score"].tolist() == ["3.50", "NA"]


def test_unnamed_and_repeated_header_cells_get_usable_names(tmp_path):
    df = read_table(write(tmp_path, b",text,label,text\n0,a,x,b\n1,c,y,d\n"))
    assert list(df.columns) == ["column_1", "text", "label", "text_2"]


# ---------------------------------------------------------------------------------------------------- columns


def test_detects_named_columns_in_any_order(tmp_path):
    path = write(tmp_path, b"id,Sentiment,review\n1,pos,a long enough review\n2,neg,another review\n")
    ds = load_dataset(path)
    assert (ds.text_col, ds.label_col) == ("review", "Sentiment")


def test_detects_unnamed_columns_by_content():
    df = pd.DataFrame(
        {
            "a": [f"a rather long sentence number {i}" for i in range(8)],
            "b": ["x", "y"] * 4,
            "c": [str(i) for i in range(8)],
        }
    )
    assert detect_columns(df) == ("a", "b")


def test_override_beats_detection(tmp_path):
    path = write(tmp_path, b"text,label,topic,title\nfirst,pos,sport,t1\nsecond,neg,news,t2\nthird,pos,news,t3\n")
    ds = load_dataset(path, text_col="title", label_col="topic")
    assert (ds.text_col, ds.label_col) == ("title", "topic")
    assert ds.texts == ["t1", "t2", "t3"]
    assert ds.label_names == ("news", "sport")
    assert ds.records[0] == {"text": "t1", "label": "pos", "title": "t1"}  # the original "text" is shadowed
    assert "topic" not in ds.columns  # the label column never reaches a template


def test_only_label_given_guesses_text_among_the_rest(tmp_path):
    path = write(tmp_path, b"label,comment,gold\nx,some comment,pos\ny,another comment,neg\n")
    ds = load_dataset(path, label_col="gold")
    assert (ds.text_col, ds.label_col) == ("comment", "gold")


def test_text_b_pair_column(tmp_path):
    data = b"premise,hypothesis,label\nA man sleeps.,  A   person rests. ,entailment\nIt rains.,It is dry.,contradiction\n"
    ds = load_dataset(write(tmp_path, data), text_col="premise", text_b_col="hypothesis")
    assert ds.text_b_col == "hypothesis"
    assert ds.records[0]["text"] == "A man sleeps."
    assert ds.records[0]["text_b"] == "A person rests."
    assert ds.columns == ["text", "text_b", "premise", "hypothesis"]
    assert ds.summary()["text_b_col"] == "hypothesis"


def test_other_columns_are_kept_as_strings(tmp_path):
    ds = load_dataset(write(tmp_path, b"text,label,source\nhi,a, web \nho,b,book\n"))
    assert ds.records == ({"text": "hi", "source": "web"}, {"text": "ho", "source": "book"})


# ---------------------------------------------------------------------------------------------------- normalising


def test_label_normalisation_and_numeric_order(tmp_path):
    path = write(tmp_path, b"text,label\na, 1.0\nb,2\nc,10.00\nd,1\ne,  2 \n")
    ds = load_dataset(path)
    assert ds.label_names == ("1", "2", "10")
    assert [ds.label_names[y] for y in ds.labels] == ["1", "2", "10", "1", "2"]
    assert ds.label_counts() == {"1": 2, "2": 2, "10": 1}


def test_text_whitespace_is_collapsed(tmp_path):
    ds = load_dataset(write(tmp_path, b'text,label\n"  many   spaces\there ",a\n"x\r\ny",b\n'))
    assert ds.texts == ["many spaces here", "x y"]


def test_empty_rows_are_dropped_and_counted(tmp_path):
    path = write(tmp_path, b"text,label\ngood,pos\n,neg\n   ,pos\nbad,\nfine,neg\n")
    ds = load_dataset(path)
    assert ds.texts == ["good", "fine"]
    assert "dropped 3 rows with empty text or label" in ds.warnings
    assert ds.summary()["warnings"] == list(ds.warnings)


def test_long_texts_are_truncated_with_a_warning(tmp_path):
    path = write(tmp_path, csv_bytes([("x" * 50, "a"), ("short", "b"), ("y" * 11, "a")]))
    ds = load_dataset(path, limits=Limits(max_text_chars=10))
    assert [len(t) for t in ds.texts] == [10, 5, 10]
    assert "truncated 2 texts to 10 characters" in ds.warnings


def test_too_many_rows_keeps_the_first_with_a_warning(tmp_path):
    path = write(tmp_path, csv_bytes([(f"t{i}", "ab"[i % 2]) for i in range(10)]))
    ds = load_dataset(path, limits=Limits(max_rows=4))
    assert ds.texts == ["t0", "t1", "t2", "t3"]
    assert any("kept the first 4 rows" in w and "Limits" not in w for w in ds.warnings)


def test_summary_is_json_serialisable(tmp_path):
    ds = load_dataset(write(tmp_path, csv_bytes([("a", "x"), ("b", "y"), ("c", "x")])))
    summary = json.loads(json.dumps(ds.summary()))
    assert summary == {
        "rows": 3,
        "labels": ["x", "y"],
        "label_counts": {"x": 2, "y": 1},
        "text_col": "text",
        "label_col": "label",
        "text_b_col": None,
        "warnings": [],
    }


def test_load_texts_for_prediction(tmp_path):
    records, warnings = load_texts(write(tmp_path, b"id,text\n1,  new   one \n2,\n3,new two\n"))
    assert records == ({"text": "new one", "id": "1"}, {"text": "new two", "id": "3"})
    assert warnings == ("dropped 1 rows with empty text",)


# ---------------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", ["empty"]),
        (b"  \n\n ", ["empty"]),
        (b"\xef\xbb\xbf", ["empty"]),
        (b"text,label\n", ["no data rows"]),
        (b"great film,positive\nawful film,negative\nfine film,positive\n", ["first row looks like data", "header"]),
        (b"0.5,1\n0.7,0\n", ["first row looks like data"]),
        (b"text,label\x00\x01\x02rest", ["NUL", "binary"]),
        (bytes(range(1, 256)) * 20, ["not readable text"]),
        (b"PK\x03\x04\x14\x00\x06\x00", ["Excel", "save it as CSV"]),
        (b"text,label\ngood,pos\nbad, worse,neg\n", ["line 3 has 3 fields", "quotes"]),
    ],
)
def test_bad_files_raise_one_line_data_error(tmp_path, data, words):
    with pytest.raises(DataError) as err:
        load_dataset(write(tmp_path, data))
    assert_one_line_error(err, *words)


def test_missing_file(tmp_path):
    with pytest.raises(DataError) as err:
        load_dataset(tmp_path / "nope.csv")
    assert_one_line_error(err, "not found", "nope.csv")


def test_file_too_large_fails(tmp_path):
    path = write(tmp_path, csv_bytes([("x" * 100, "a"), ("y" * 100, "b")]))
    with pytest.raises(DataError) as err:
        load_dataset(path, limits=Limits(max_bytes=100))
    assert_one_line_error(err, "over the", "limit")
    with pytest.raises(DataError):
        load_dataset(path.read_bytes(), limits=Limits(max_bytes=100))


@pytest.mark.parametrize("kwargs", [{"label_col": "lbl"}, {"text_col": "body"}, {"text_b_col": "second"}])
def test_missing_column_names_the_available_ones(tmp_path, kwargs):
    path = write(tmp_path, csv_bytes([("a", "x"), ("b", "y")]))
    with pytest.raises(DataError) as err:
        load_dataset(path, **kwargs)
    assert_one_line_error(err, repr(next(iter(kwargs.values()))), "text, label")


def test_single_label_is_refused(tmp_path):
    with pytest.raises(DataError) as err:
        load_dataset(write(tmp_path, csv_bytes([("a", "pos"), ("b", " pos "), ("c", "pos")])))
    assert_one_line_error(err, "only one label", "'pos'", "at least two")


def test_single_column_is_refused(tmp_path):
    with pytest.raises(DataError) as err:
        load_dataset(write(tmp_path, b"text\nfirst\nsecond\n"))
    assert_one_line_error(err, "only one column", "text")


def test_no_guessable_label_column(tmp_path):
    data = b"a,b\n" + b"".join(f"text {i},other {i}\n".encode() for i in range(6))
    with pytest.raises(DataError) as err:
        load_dataset(write(tmp_path, data))
    assert_one_line_error(err, "which column holds the labels", "choose the label column")


def test_all_rows_empty_is_refused(tmp_path):
    with pytest.raises(DataError) as err:
        load_dataset(write(tmp_path, b"text,label\n,a\n  ,b\n"))
    assert_one_line_error(err, "no rows have both")


# ---------------------------------------------------------------------------------------------------- splitting


def label_counts(ds: LabeledDataset) -> dict[str, int]:
    return ds.label_counts()


def test_split_is_stratified_disjoint_and_complete():
    ds = balanced({"a": 60, "b": 30, "c": 21})
    split = split_dataset(ds, test_size=0.5, dev_size=0.1, seed=3)
    n = len(ds)
    assert (len(split.train), len(split.dev), len(split.test)) == (n - 56 - 11, 11, 56)
    for part in (split.train, split.dev, split.test):
        for name, count in ds.label_counts().items():
            expected = count * len(part) / n
            assert abs(part.label_counts()[name] - expected) <= 1, (name, part.label_counts(), expected)
    texts = [set(p.texts) for p in (split.train, split.dev, split.test)]
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])
    assert set.union(*texts) == set(ds.texts)
    assert split.train.label_names == ds.label_names
    assert split.summary() == {"train": 44, "dev": 11, "test": 56, "seed": 3}


def test_split_is_reproducible_and_seed_dependent():
    ds = balanced({"a": 40, "b": 40})
    first, again = split_dataset(ds, seed=7), split_dataset(ds, seed=7)
    other = split_dataset(ds, seed=8)
    assert first.test.texts == again.test.texts and first.dev.texts == again.dev.texts
    assert set(first.test.texts) != set(other.test.texts)


def test_split_accepts_a_test_row_count_and_no_dev():
    split = split_dataset(balanced({"a": 20, "b": 20}), test_size=10, dev_size=0)
    assert (len(split.train), len(split.dev), len(split.test)) == (30, 0, 10)
    assert split.test.label_counts() == {"a": 5, "b": 5}


@pytest.mark.parametrize(
    ("sizes", "fix"),
    [
        ({"test_size": 0.8, "dev_size": 0}, "lower the test share"),
        ({"test_size": 0.5, "dev_size": 0.1}, "set the dev share to 0"),
    ],
)
def test_split_refuses_a_label_too_small_for_every_part(sizes, fix):
    with pytest.raises(DataError) as err:
        split_dataset(balanced({"big": 100, "tiny": 6}), **sizes)
    assert_one_line_error(err, "'tiny'", "only 6 rows", "add rows", fix)


@pytest.mark.parametrize("test_size", [0, 1.5, -0.2, 200, True, "half"])
def test_split_refuses_bad_test_size(test_size):
    with pytest.raises(DataError) as err:
        split_dataset(balanced({"a": 20, "b": 20}), test_size=test_size)
    assert_one_line_error(err, "the test share must be")


def test_k_shot_counts_and_seeds():
    ds = balanced({"a": 30, "b": 30, "c": 30})
    sample = k_shot(ds, 4, seed=1)
    assert sample.label_counts() == {"a": 4, "b": 4, "c": 4}
    assert k_shot(ds, 4, seed=1).texts == sample.texts
    assert set(k_shot(ds, 4, seed=2).texts) != set(sample.texts)
    assert set(sample.texts) <= set(ds.texts)


def test_k_shot_refuses_a_class_with_fewer_than_k_rows():
    with pytest.raises(DataError) as err:
        k_shot(balanced({"a": 10, "b": 3}), 5, seed=0)
    assert_one_line_error(err, "'b'", "only 3 rows", "K=5", "lower K (examples per label) to 3")


def test_few_shot_split_keeps_test_and_draws_disjoint_train_dev():
    split = split_dataset(balanced({"a": 40, "b": 40}), test_size=0.5, dev_size=0.1, seed=0)
    train, dev = few_shot_split(split, 4, seed=5)
    assert train.label_counts() == {"a": 4, "b": 4} and dev.label_counts() == {"a": 4, "b": 4}
    assert not set(train.texts) & set(dev.texts)
    assert not (set(train.texts) | set(dev.texts)) & set(split.test.texts)
    assert train.texts == k_shot(split.train, 4, seed=5).texts
    again = few_shot_split(split, 4, seed=5)
    assert again[0].texts == train.texts and again[1].texts == dev.texts
    assert set(few_shot_split(split, 4, seed=6)[0].texts) != set(train.texts)
    assert few_shot_split(split, None, seed=5) == (split.train, split.dev)


def test_few_shot_dev_reuses_train_rows_only_when_it_must():
    split = split_dataset(
        balanced({"a": 40, "b": 40}), test_size=0.5, dev_size=0.1, seed=0
    )  # 20 non-test rows per label
    train, dev = few_shot_split(split, 15, seed=0)
    assert dev.label_counts() == {"a": 15, "b": 15}
    assert len(set(train.texts) & set(dev.texts)) == 2 * (15 - 5)
    assert any("shares rows with train" in w for w in dev.warnings)


# ---------------------------------------------------------------------------------------------------- samples


@pytest.mark.parametrize(
    ("name", "labels"),
    [("movie_reviews.csv", ("negative", "positive")), ("subjectivity.csv", ("objective", "subjective"))],
)
def test_labeled_samples_load_balanced(name, labels):
    ds = load_dataset(SAMPLES / name)
    assert (ds.text_col, ds.label_col) == ("text", "label")
    assert ds.label_names == labels
    assert ds.label_counts() == {labels[0]: 500, labels[1]: 500}
    assert ds.warnings == ()
    assert all(30 <= len(t) <= 300 for t in ds.texts)
    assert len(set(ds.texts)) == 1000
    split = split_dataset(ds, seed=0)
    assert split.test.label_counts() == {labels[0]: 250, labels[1]: 250}


def test_new_reviews_sample_is_unlabeled_and_unseen():
    records, warnings = load_texts(SAMPLES / "movie_reviews_new.csv")
    assert len(records) == 40 and warnings == ()
    assert set(records[0]) == {"text"}
    assert not {r["text"] for r in records} & set(load_dataset(SAMPLES / "movie_reviews.csv").texts)


def test_labels_differing_only_by_invisible_characters_or_look_alikes_merge_with_one_warning():
    rows = ["positive", "positive\u200b", "\uff50ositive", " positive\u00a0", "negative", "negative\ufeff", "1.0", "1"]
    csv = "text,label\n" + "".join(f"row {i},{label}\n" for i, label in enumerate(rows))
    ds = load_dataset(csv.encode("utf-8"))
    assert ds.label_names == ("1", "negative", "positive")
    assert ds.label_counts() == {"1": 2, "negative": 2, "positive": 4}
    merged = [w for w in ds.warnings if w.startswith("merged labels")]
    assert len(merged) == 1 and "'positive\\u200b'" in merged[0] and "'ｐositive'" in merged[0]
    assert "'1.0'" not in merged[0]  # a spreadsheet's 1.0 -> 1 is folded silently, as before


def test_look_alike_labels_from_another_script_are_kept_apart_with_one_warning_naming_each_pair():
    """Cyrillic і and а read as Latin i and a: never merged (they may be real classes), always said, with the
    letter that differs."""
    labels = ["positive", "positіve", "a", "а", "negative"]
    csv = "text,label\n" + "".join(f"row {i},{labels[i % 5]}\n" for i in range(15))
    ds = load_dataset(csv.encode("utf-8"))
    assert len(ds.label_names) == 5 and set(ds.label_counts().values()) == {3}
    (warning,) = [w for w in ds.warnings if "look alike" in w]
    assert "'positive' / 'positіve': one has 'і' (Cyrillic, U+0456) where the other has 'i'" in warning
    assert "'a' / 'а': one has 'а' (Cyrillic, U+0430) where the other has 'a'" in warning
    assert warning.endswith("if they are one class, fix the file") and "\n" not in warning


def test_plain_labels_get_no_look_alike_warning():
    csv = "text,label\n" + "".join(f"row {i},{lab}\n" for i, lab in enumerate(["I", "l", "1", "O", "0"] * 2))
    assert not [w for w in load_dataset(csv.encode("utf-8")).warnings if "look alike" in w]


def test_a_column_name_typed_in_another_script_is_explained(tmp_path):
    path = write(tmp_path, csv_bytes([("a", "x"), ("b", "y")]))
    with pytest.raises(DataError) as err:
        load_dataset(path, label_col="lаbel")  # Cyrillic а
    assert_one_line_error(err, "column 'label' looks the same", "'а' (Cyrillic, U+0430)")


@pytest.mark.parametrize(
    "make",
    [
        lambda: load_dataset(b"a,b\n" + b"".join(f"text {i},other {i}\n".encode() for i in range(6))),
        lambda: load_dataset(b"text,label\nx,y\n", label_col="lbl"),
        lambda: load_dataset(b"text,label\na,pos\nb,pos\n"),
        lambda: load_texts(b"text,other\n ,a\n", text_col="text"),
        lambda: k_shot(balanced({"a": 10, "b": 3}), 5, seed=0),
        lambda: split_dataset(balanced({"big": 100, "tiny": 6}), test_size=0.5, dev_size=0.1),
        lambda: split_dataset(balanced({"a": 20, "b": 20}), test_size=0.8, dev_size=0.3),
        lambda: load_dataset(b"text,label\n" + b"x,y\n" * 200, limits=Limits(max_bytes=100)),
    ],
)
def test_messages_use_the_words_on_the_page_not_parameter_names(make):
    """The Data page says "Label column", "Test share", "K (examples per label)": a message a person reads names
    those, never a Python parameter or constant (label_col, test_size, k_shot, Limits.max_bytes)."""
    with pytest.raises(DataError) as err:
        make()
    for code in ("_col", "test_size", "dev_size", "k_shot", "min_per_label", "Limits."):
        assert code not in str(err.value), str(err.value)


def test_labels_differing_only_by_case_are_kept_and_reported_once():
    csv = "text,label\n" + "".join(f"r{i},{lab}\n" for i, lab in enumerate(["Good", "good", "GOOD", "bad", "Bad"]))
    ds = load_dataset(csv.encode("utf-8"))
    assert ds.label_names == ("Bad", "GOOD", "Good", "bad", "good")
    case = [w for w in ds.warnings if "differ only by case" in w]
    assert len(case) == 1 and "'GOOD' / 'Good' / 'good'" in case[0] and "'Bad' / 'bad'" in case[0]


def test_airline_tweets_sample_has_three_balanced_labels():
    ds = load_dataset(SAMPLES / "airline_tweets.csv")
    assert (ds.text_col, ds.label_col) == ("text", "label") and ds.warnings == ()
    assert ds.label_counts() == {"negative": 168, "neutral": 168, "positive": 168}
    assert all(30 <= len(t) <= 200 and "http" not in t for t in ds.texts)
    assert len({t.lower() for t in ds.texts}) == 504
