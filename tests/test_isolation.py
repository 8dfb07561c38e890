"""The suite's own rule: nothing outside the repository is read (tests/isolation.py), and the texts the
tests use instead (tests/texts.py) hold together."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import AUDIT
from tests.isolation import REPO, OpenAudit
from tests.texts import EXAMPLES, PASSAGES, musique_like, rag_docs, squad_like, write_data_dir


def test_the_evaluation_data_beside_a_checkout_is_outside() -> None:
    assert AUDIT.outside(REPO.parent / "shared" / "data" / "musique_dev.json")
    assert AUDIT.outside("/ragblend-nowhere/notes.txt")
    assert not AUDIT.outside(REPO / "README.md")
    assert not AUDIT.outside(Path.home() / ".local" / "share" / "ragblend" / "models")


def test_an_open_outside_the_allowed_folders_is_recorded(tmp_path: Path) -> None:
    inside, outside = tmp_path / "repo", tmp_path / "elsewhere"
    inside.mkdir()
    outside.mkdir()
    (inside / "a.txt").write_text("a")
    (outside / "b.txt").write_text("b")
    audit = OpenAudit(allowed=[str(inside)], forbidden=[])
    audit.hook("open", (str(inside / "a.txt"), "r", 0))
    audit.hook("open", (str(inside / ".." / "elsewhere" / "b.txt"), "r", 0))
    audit.hook("open", (str(outside / "absent.txt"), "r", 0))  # probing for a missing file is no read
    audit.hook("open", (3, "r", 0))  # a file descriptor
    audit.hook("import", ("json", None, None, None, None))
    assert audit.violations == [str(outside / "b.txt")]


def test_the_installed_hook_sees_a_real_open(tmp_path: Path) -> None:
    f = tmp_path / "x.txt"
    f.write_text("x")
    before = len(AUDIT.violations)
    AUDIT.forbidden.append(str(tmp_path))  # for this test only: the temporary folder counts as outside
    try:
        with open(f) as fh:
            fh.read()
    finally:
        AUDIT.forbidden.pop()
        seen = AUDIT.violations[before:]
        del AUDIT.violations[before:]  # not a failure of this test: it was provoked on purpose
    assert seen == [str(f)]


def test_suite_texts_answer_their_questions() -> None:
    assert len({p.title for p in PASSAGES}) == len(PASSAGES)
    for ex in EXAMPLES:
        assert ex.answer in PASSAGES[ex.gold].text, ex
    question, docs = rag_docs(4, 3, 20)
    assert question == EXAMPLES[4].question and len(docs) == 3
    assert all(len(d.split()) == 20 for d in docs) and docs[0].startswith(PASSAGES[4].title)


def test_suite_texts_in_the_benchmarks_layout(tmp_path: Path) -> None:
    rows = musique_like(3, 4)
    assert [len(r["ctxs"]) for r in rows] == [4, 4, 4]
    assert rows[0]["answers"][0] in rows[0]["ctxs"][0]["text"]
    for article in squad_like()["data"]:
        for para in article["paragraphs"]:
            for qa in para["qas"]:
                for a in qa["answers"]:
                    assert para["context"][a["answer_start"] :].startswith(a["text"])
    data = write_data_dir(tmp_path / "data")
    assert len(json.loads((data / "musique_dev.json").read_text())) == len(EXAMPLES)
