"""Multi-hop lookup tasks over a generated world of people, cities and countries.

The world (from ``world_seed``) has a few *famous* people, many *rare* ones, cities and countries.
Each person lives in a city and each city lies in a country; every fact is one passage of a corpus
(JSONL ``{"id", "title", "text"}``) that a BM25 ``search`` tool indexes.

easy: one hop about frequent facts — where a famous person lives, which country a city is in.
      Few entities, asked again and again in training: memorisable, so searching is optional.
hard: two hops about a rare person — "which country does X live in?" needs X's city (search 1)
      and that city's country (search 2). Held-out rare people never appear in train questions.

Search queries are chosen so BM25 ranks the gold passage first: hop 1 queries the person's full
name; hop 2 queries ``"<city> country"`` and only city passages contain the word "country".
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping
from typing import Any

from toolrl_jax.data.records import make_record
from toolrl_jax.data.splits import check_split, cycle_sample, split_of
from toolrl_jax.data.trajectories import format_tool_result

TASK = "lookup"
_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"
_JOBS = ("baker", "teacher", "pilot", "farmer", "doctor", "painter", "sailor", "miner", "weaver",
         "singer")
_FAMOUS_CITY_TEMPLATES = ("Which city does {p} live in?", "In which city does {p} live?",
                          "What city is {p} from?")
_COUNTRY_OF_CITY_TEMPLATES = ("Which country is {c} in?", "In which country is the city of {c}?")
_TWO_HOP_TEMPLATES = ("Which country does {p} live in?", "In which country does {p} live?")


@dataclasses.dataclass(frozen=True)
class World:
    countries: tuple[str, ...]
    cities: tuple[str, ...]
    famous: tuple[str, ...]
    rare: tuple[str, ...]
    city_country: Mapping[str, str]
    person_city: Mapping[str, str]
    person_job: Mapping[str, str]

    def person_passage(self, person: str) -> dict[str, str]:
        index = (self.famous + self.rare).index(person)
        return {
            "id": f"person-{index:05d}",
            "title": person,
            "text": f"{person} is a {self.person_job[person]} who lives in the city of "
            f"{self.person_city[person]}.",
        }

    def city_passage(self, city: str) -> dict[str, str]:
        return {
            "id": f"city-{self.cities.index(city):04d}",
            "title": city,
            "text": f"{city} is a city in the country of {self.city_country[city]}.",
        }

    def passages(self) -> list[dict[str, str]]:
        """The search corpus: one passage per person, then one per city."""
        return [self.person_passage(p) for p in self.famous + self.rare] + [
            self.city_passage(c) for c in self.cities
        ]


class _Namer:
    """Pronounceable made-up words, unique across the whole world (no accidental homonyms)."""

    def __init__(self, rng: random.Random):
        self._rng, self._used = rng, set()

    def word(self, syllables: int, suffix: str = "") -> str:
        while True:
            parts = [self._rng.choice(_CONSONANTS) + self._rng.choice(_VOWELS)
                     for _ in range(syllables)]
            word = ("".join(parts) + self._rng.choice(_CONSONANTS) + suffix).capitalize()
            if word not in self._used:
                self._used.add(word)
                return word


def make_world(
    world_seed: int, *, num_countries: int, num_cities: int, num_famous: int, num_rare: int
) -> World:
    if num_cities < num_countries:
        raise ValueError(f"num_cities={num_cities} < num_countries={num_countries}")
    rng = random.Random(f"{TASK}-world:{world_seed}")
    namer = _Namer(rng)
    countries = tuple(namer.word(2, suffix=rng.choice(("ia", "land", "ora"))) for _ in
                      range(num_countries))
    cities = tuple(namer.word(rng.choice((2, 3))) for _ in range(num_cities))
    # Every country gets at least one city; the rest are spread at random.
    homes = list(countries) + [rng.choice(countries) for _ in range(num_cities - num_countries)]
    rng.shuffle(homes)
    people = [f"{namer.word(2)} {namer.word(2)}" for _ in range(num_famous + num_rare)]
    return World(
        countries=countries,
        cities=cities,
        famous=tuple(people[:num_famous]),
        rare=tuple(people[num_famous:]),
        city_country=dict(zip(cities, homes, strict=True)),
        person_city={p: rng.choice(cities) for p in people},
        person_job={p: rng.choice(_JOBS) for p in people},
    )


def _easy_items(world: World) -> list[dict[str, Any]]:
    items = []
    for person in world.famous:
        city = world.person_city[person]
        for template in _FAMOUS_CITY_TEMPLATES:
            items.append({"question": template.format(p=person), "answer": city,
                          "hops": [(person, world.person_passage(person))], "kind": "city_of"})
    for city in world.cities:
        for template in _COUNTRY_OF_CITY_TEMPLATES:
            items.append({"question": template.format(c=city), "answer": world.city_country[city],
                          "hops": [(f"{city} country", world.city_passage(city))],
                          "kind": "country_of_city"})
    return items


def _hard_items(world: World, people: list[str]) -> list[dict[str, Any]]:
    items = []
    for person in people:
        city = world.person_city[person]
        hops = [(person, world.person_passage(person)),
                (f"{city} country", world.city_passage(city))]
        for template in _TWO_HOP_TEMPLATES:
            items.append({"question": template.format(p=person), "answer": world.city_country[city],
                          "hops": hops, "kind": "country_of_person", "subject": person})
    return items


def passage_text(passage: Mapping[str, str]) -> str:
    """What the default (gold) search result shows: the passage text."""
    return passage["text"]


def trajectory_for(item: Mapping[str, Any]) -> str:
    """Long-mode completion: a brief plan, one search per hop with its result, the answer.

    The stored result is the gold passage — what a BM25 tool ranks first for these queries. SFT
    can re-render it with the real search tool's output (see :mod:`.trajectories`).
    """
    hops = item["hops"]
    plan = ("Search for where they live, then that city's country." if len(hops) == 2
            else "Search for the fact.")
    parts = [f"<think>{plan}</think>\n"]
    for query, passage in hops:
        parts.append(f"<search>{query}</search>{format_tool_result(passage_text(passage))}")
    parts.append(f"<answer>{item['answer']}</answer>")
    return "".join(parts)


def generate(
    world: World,
    split: str,
    num: int,
    *,
    seed: int,
    hard_fraction: float,
    split_seed: int,
    heldout_fraction: float,
) -> list[dict[str, Any]]:
    """``num`` lookup records of ``split``; ``round(num * hard_fraction)`` of them hard (two-hop).

    Easy items are split by question text; hard items by person, so a held-out rare person is
    never the subject of a train question.
    """
    check_split(split)
    rng = random.Random(f"{TASK}:{split}:{seed}")
    num_hard = round(num * hard_fraction)
    easy_pool = [it for it in _easy_items(world)
                 if split_of(it["question"], split_seed, heldout_fraction) == split]
    people = [p for p in world.rare if split_of(p, split_seed, heldout_fraction) == split]
    hard_pool = _hard_items(world, people)
    for name, pool, count in (("easy", easy_pool, num - num_hard), ("hard", hard_pool, num_hard)):
        if count > 0 and not pool:
            raise ValueError(f"no {name} lookup item falls in split {split!r}; grow the world "
                             "(num_famous / num_cities / num_rare) or change split_seed")
    items = ([("easy", it) for it in cycle_sample(rng, easy_pool, num - num_hard)]
             + [("hard", it) for it in cycle_sample(rng, hard_pool, num_hard)])
    rng.shuffle(items)
    return [
        make_record(
            id=f"{TASK}-{split}-{i:05d}",
            question=item["question"],
            answer=item["answer"],
            task=TASK,
            difficulty=difficulty,
            trajectory=trajectory_for(item),
            # subject: a hard item's person — both its question templates stay on one side of
            # data.rl_only_fraction (data/splits.py:stage_key)
            metadata={"kind": item["kind"], "hops": [[q, p["id"]] for q, p in item["hops"]],
                      **({"subject": item["subject"]} if "subject" in item else {})},
        )
        for i, (difficulty, item) in enumerate(items)
    ]
