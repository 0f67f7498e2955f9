"""Callers' text made safe to store and show back."""

from __future__ import annotations

from slackwater.domain.text import MAX_FILENAME, clean_filename, shown


def test_filenames_lose_paths_controls_and_markup() -> None:
    assert clean_filename("../../../etc/passwd") == "passwd"
    assert clean_filename("..\\..\\windows\\system32.jsonl") == "system32.jsonl"
    assert clean_filename("in\x00put.jsonl") == "input.jsonl"
    assert clean_filename("evil\u202egpj.jsonl") == "evilgpj.jsonl"  # right-to-left override
    assert clean_filename("<b>bold</b>.jsonl") == "b_.jsonl"  # "/" cuts the path
    assert clean_filename("<b>bold.jsonl") == "_b_bold.jsonl"
    assert clean_filename("données été.jsonl") == "données été.jsonl"  # letters are kept
    assert clean_filename("..") == "upload.jsonl" and clean_filename("") == "upload.jsonl"


def test_long_filenames_are_capped_keeping_the_extension() -> None:
    name = clean_filename("a" * 10_000 + ".jsonl")
    assert len(name) == MAX_FILENAME and name.endswith(".jsonl")
    assert len(clean_filename("b" * 10_000)) == MAX_FILENAME


def test_echoed_values_are_cut() -> None:
    assert shown("file_abc") == "file_abc"
    cut = shown("x" * 100_000)
    assert cut.startswith("x" * 64) and cut.endswith("(100000 characters)") and len(cut) < 100
