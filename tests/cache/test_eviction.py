from __future__ import annotations

import math
import random

import pytest

from cache.eviction import CraftPolicy, LRUPolicy, make_policy
from cache.keys import chunk_key
from cache.replay import replay


def drain(policy: LRUPolicy | CraftPolicy) -> list[str]:
    order = []
    while (victim := policy.victim()) is not None:
        order.append(victim)
        policy.remove(victim)
    return order


def test_lru_order() -> None:
    p = LRUPolicy()
    for key in "abcd":
        p.add(key, 10, 1.0)
    p.touch("a")
    p.touch("zz")  # unknown keys are ignored
    p.remove("c")
    assert len(p) == 3
    assert drain(p) == ["b", "d", "a"]


def test_craft_keeps_frequently_reused_chunks() -> None:
    p = CraftPolicy(half_life=1000)
    for key in "abcd":
        p.add(key, 100, 100.0)
    for _ in range(3):
        p.touch("a")
    p.touch("b")
    p.add("e", 100, 100.0)  # newest, but used once: LRU would keep it longest
    assert drain(p) == ["c", "d", "e", "b", "a"]


def test_craft_values_recompute_cost_per_byte() -> None:
    p = CraftPolicy()
    p.add("cheap", 1000, 10.0)
    p.add("dear", 1000, 2000.0)
    p.add("small", 10, 10.0)
    assert drain(p) == ["cheap", "small", "dear"]


@pytest.mark.parametrize(("half_life", "victim"), [(10.0, "old"), (1e9, "fresh")])
def test_craft_forgets_old_popularity(half_life: float, victim: str) -> None:
    p = CraftPolicy(half_life=half_life)
    p.add("old", 1, 1.0)
    for _ in range(5):
        p.touch("old")
    for i in range(200):  # later traffic decays "old"'s count
        p.add(f"k{i}", 1, 1.0)
        p.remove(f"k{i}")
    p.add("fresh", 1, 1.0)
    assert p.victim() == victim


def test_craft_remembers_evicted_keys() -> None:
    p = CraftPolicy(half_life=1000)
    p.add("a", 1, 1.0)
    for _ in range(4):
        p.touch("a")
    p.remove("a")
    p.add("b", 1, 1.0)
    p.add("a", 1, 1.0)  # comes back with its history
    assert p.victim() == "b"


def test_craft_heap_matches_brute_force() -> None:
    rng = random.Random(0)
    p = CraftPolicy(half_life=50)
    live: dict[str, tuple[float, int, float]] = {}  # hits, t_last, cost/bytes
    ghosts: dict[str, tuple[float, int]] = {}
    clock = 0

    def hits_now(h: float, t: int) -> float:
        return h * 0.5 ** ((clock - t) / 50)

    for _ in range(3000):
        key = f"k{rng.randrange(60)}"
        op = rng.random()
        if op < 0.4:
            clock += 1
            size, cost = rng.randrange(1, 100), rng.randrange(1, 100)
            prev = live.get(key) or (ghosts.pop(key, None) or (0.0, clock)) + (0.0,)
            live[key] = (hits_now(prev[0], prev[1]) + 1, clock, cost / size)
            p.add(key, size, cost)
        elif op < 0.8 and key in live:
            clock += 1
            h, t, value = live[key]
            live[key] = (hits_now(h, t) + 1, clock, value)
            p.touch(key)
        elif live:
            victim = p.victim()
            best = min(live, key=lambda k: hits_now(*live[k][:2]) * live[k][2])
            assert victim is not None
            assert math.isclose(
                hits_now(*live[victim][:2]) * live[victim][2], hits_now(*live[best][:2]) * live[best][2]
            )
            ghosts[victim] = live.pop(victim)[:2]
            p.remove(victim)
        assert len(p) == len(live)


def test_make_policy() -> None:
    assert isinstance(make_policy("lru"), LRUPolicy)
    assert isinstance(make_policy("craft", 3.0), CraftPolicy)


def test_adaptive_half_life_follows_size_and_heap_stays_consistent() -> None:
    rng = random.Random(1)
    p = CraftPolicy(turnovers=2.0)
    for i in range(100):
        p.add(f"k{i}", rng.randrange(1, 50), 10.0)
    assert 180 <= p.half_life <= 220
    for _ in range(2000):
        key = f"k{rng.randrange(150)}"
        if rng.random() < 0.5:
            p.add(key, rng.randrange(1, 50), 10.0)
        elif rng.random() < 0.7:
            p.touch(key)
        elif (victim := p.victim()) is not None:
            # The victim has the lowest value per byte under the current half-life.
            def score(k: str) -> float:
                hits, t_last, value, _ = p._state[k]
                return math.log2(hits) - (p._clock - t_last) / p.half_life + value

            assert math.isclose(score(victim), min(score(k) for k in p._state), abs_tol=1e-9)
            p.remove(victim)
    assert len(p) > 0


def test_replay_counts_hits_and_recomputed_tokens() -> None:
    a, b, c = (chunk_key("m", "p", [i], "", "float32") for i in range(3))
    trace = [[(a, 10), (b, 20)], [(a, 10)], [(c, 30)], [(b, 20), (a, 10)]]
    result = replay(trace, budget_tokens=40, policy=LRUPolicy())  # c evicts b (LRU)
    assert (result.lookups, result.hits, result.recomputed_tokens, result.total_tokens) == (6, 2, 80, 100)
    assert result.evictions == 2 and result.hit_rate == 2 / 6
