"""The next-word benchmark's data pipeline (bench.nextword), on tiny hand-made trees."""

import numpy as np

from bench import nextword as bn


def test_words_keep_identifiers_numbers_and_prose_but_not_escapes():
    text = 'def f(x_1):\n    """Return\\nthe 0x1F café."""  # a comment\n    return "\\tab"\n'
    assert bn.words(text) == [
        "def", "f", "x_1", "Return", "the", "0x1F", "café", "a", "comment", "return", "ab",
    ]  # fmt: skip


def test_decode_source_follows_the_coding_cookie():
    data = "# -*- coding: latin-1 -*-\nname = 'é'\n".encode("latin-1")
    assert "'é'" in bn.decode_source(data)
    assert bn.decode_source(b"\xff\xfe bad") == "\ufffd\ufffd bad"


def test_split_is_by_the_hash_of_the_relative_path():
    # first SHA-256 bytes: e.py 2, t1.py 9 (test); a.py 240, json/decoder.py 59 (train)
    assert bn.is_test_file("e.py") and bn.is_test_file("t1.py")
    assert not bn.is_test_file("a.py") and not bn.is_test_file("json/decoder.py")


def test_corpus_vocabulary_contexts_and_exclusions(tmp_path):
    (tmp_path / "a.py").write_text("x = x + y\n")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "b.py").write_text("y = z\n")
    (tmp_path / "e.py").write_text("x = w\n")  # test split
    for skipped in ("site-packages", "__pycache__"):
        (tmp_path / skipped).mkdir()
        (tmp_path / skipped / "c.py").write_text("never seen\n")
    assert bn.stdlib_files(tmp_path) == ["a.py", "e.py", "pkg/b.py"]
    c = bn.build_corpus(str(tmp_path), context=2)
    # by descending count, then by the word; <unk> last; <s> = len(vocab) is an input only
    assert c.vocab == ["x", "y", "z", "<unk>"]
    assert (c.train.tokens, c.test.tokens, c.test_oov) == (5, 2, 1)
    ctx, y = c.batch(c.train, c.train.positions)
    bos = c.bos
    assert y.tolist() == [0, 0, 1, 1, 2]
    assert ctx.tolist() == [[bos, bos], [bos, 0], [0, 0], [bos, bos], [bos, 1]]
    ctx, y = c.batch(c.test, c.test.positions)
    assert y.tolist() == [0, 3] and ctx.tolist() == [[bos, bos], [bos, 0]]
    again = bn.build_corpus(str(tmp_path), context=2)
    assert np.array_equal(again.train.stream, c.train.stream)
