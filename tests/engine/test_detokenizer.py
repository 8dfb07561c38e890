from __future__ import annotations

from engine.detokenizer import IncrementalDetokenizer, StopMatcher
from engine.torch_engine import TorchEngine


def test_incremental_text_equals_full_decode(engine: TorchEngine) -> None:
    text = "Héllo wörld: 日本語のテキスト 🙂🚀 and naïve café — done."
    ids = engine.tokenizer(text, add_special_tokens=False).input_ids
    detok = IncrementalDetokenizer(engine.tokenizer)
    pieces = [detok.add(t) for t in ids]
    assert "".join(pieces) == engine.tokenizer.decode(ids)
    assert all("\ufffd" not in p for p in pieces)


def test_stop_string_split_across_deltas_never_leaks() -> None:
    m = StopMatcher(("STOP",))
    shown = [m.feed(d) for d in ["Hello ", "wor", "ld ST", "O", "P and more"]]
    assert "".join(shown) == "Hello world "
    assert m.stopped and m.text == "Hello world "


def test_held_back_prefix_is_released_when_it_is_not_a_stop() -> None:
    m = StopMatcher(("</s>",))
    assert m.feed("a <") == "a "
    assert m.feed("/b") == "</b"
    assert not m.stopped
    m2 = StopMatcher(("xyz",))
    m2.feed("abc x")
    assert m2.flush() == "x"


def test_earliest_of_several_stops_wins() -> None:
    m = StopMatcher(("two", "one"))
    m.feed("zero one two")
    assert m.stopped and m.text == "zero "


def test_no_stops_passes_through() -> None:
    m = StopMatcher(())
    assert m.feed("abc") == "abc" and m.text == "abc"
