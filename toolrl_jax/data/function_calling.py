"""Function-calling items: records that carry their own tools, the BFCL loader, and a synthetic
generator for CPU demos and tests.

A function-calling record is a task record (:mod:`toolrl_jax.data.records`) with
``task = "function_call"``, ``answer`` = the JSON text of BFCL ground truth
``[{name: {arg: [allowed values]}}]`` (``""`` among the allowed values: may be omitted; ``[]``: no
call is right) and, in ``metadata``: ``tools`` (JSON-schema function specs: ``name``,
``description``, ``parameters`` with ``properties`` / ``required``), ``messages`` (the chat, when
the item is more than one user question) and ``category`` (``simple_python``, ``parallel``, …).
The prompt renders the item's tools (:mod:`toolrl_jax.data.prompts`), a call of one of them ends
the rollout (it is the answer, never executed) and :func:`toolrl_jax.verifiers.check_calls`
(BFCL's AST checker) grades the calls of the final turn.

Synthetic items (:func:`generate`), over a fixed catalogue of functions:

* easy: one call, every argument written in the question, no distractor;
* hard: two calls in parallel, or one call among distractor functions whose argument needs a unit
  or format conversion (minutes -> seconds, km -> m, "March 5, 2024" -> ``2024-03-05``);
* irrelevant (difficulty ``easy``, category ``irrelevance``): the functions cannot answer the
  question; the right answer is no call.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from toolrl_jax.data.records import DataError, make_record
from toolrl_jax.data.splits import check_split, split_of
from toolrl_jax.jsonl import iter_json_lines

TASK = "function_call"
BFCL_DIR = Path(__file__).parent / "assets" / "bfcl"
BFCL_CATEGORIES = ("simple_python", "multiple", "parallel", "parallel_multiple", "irrelevance")
_HARD_CATEGORIES = ("parallel", "parallel_multiple")
_MAX_REJECTIONS = 10_000


# ------------------------------------------------------------------------------------- records


def check_tools(tools: Any) -> None:
    """Raises ValueError naming the first malformed function spec (``tools[2].parameters``)."""
    if not isinstance(tools, list):
        raise ValueError(f"'tools' must be a list of function specs, got {type(tools).__name__}")
    for i, spec in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(spec, Mapping):
            raise ValueError(f"'{where}' must be an object")
        if isinstance(spec.get("function"), Mapping):  # OpenAI nesting {"type", "function"}
            spec = spec["function"]
        if not isinstance(spec.get("name"), str) or not spec["name"].strip():
            raise ValueError(f"'{where}.name' must be a non-empty string")
        params = spec.get("parameters", {})
        if not isinstance(params, Mapping):
            raise ValueError(f"'{where}.parameters' must be an object")
        if not isinstance(params.get("properties", {}), Mapping):
            raise ValueError(f"'{where}.parameters.properties' must be an object")
        required = params.get("required", [])
        if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
            raise ValueError(f"'{where}.parameters.required' must be a list of names")


def function_specs(tools: Sequence[Mapping]) -> list[dict]:
    """Specs without OpenAI's ``{"type": "function", "function": {...}}`` nesting."""
    return [dict(t["function"]) if isinstance(t.get("function"), Mapping) else dict(t)
            for t in tools]


def check_answer(answer: Any, tools: Sequence[Mapping]) -> None:
    """Raises ValueError naming the first malformed ground-truth entry (``answer[1].city``)."""
    if not isinstance(answer, list):
        raise ValueError(f"'answer' must be a list of {{name: {{arg: [allowed values]}}}}, got "
                         f"{type(answer).__name__}")
    names = {s["name"]: s for s in function_specs(tools)}
    for i, call in enumerate(answer):
        if not isinstance(call, Mapping) or len(call) != 1:
            raise ValueError(f"'answer[{i}]' must be an object with exactly one function name")
        (name, args), = call.items()
        if name not in names:
            raise ValueError(f"'answer[{i}]' calls {name!r}, which is not in 'tools' "
                             f"({sorted(names)})")
        if not isinstance(args, Mapping):
            raise ValueError(f"'answer[{i}].{name}' must map argument -> [allowed values]")
        for arg, allowed in args.items():
            if not isinstance(allowed, list) or not allowed:
                raise ValueError(f"'answer[{i}].{name}.{arg}' must be a non-empty list of "
                                 "allowed values")
        required = (names[name].get("parameters") or {}).get("required") or []
        for arg in required:
            if arg not in args:
                raise ValueError(f"'answer[{i}].{name}' lacks required argument {arg!r}")


def fc_record(*, id: str, tools: Sequence[Mapping], answer: Sequence[Mapping],
              question: str = "", messages: Sequence[Mapping] = (), difficulty: str = "",
              category: str = "", metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A checked function-calling record (errors name the field)."""
    tools = list(tools)
    check_tools(tools)
    check_answer(list(answer), tools)
    messages = [dict(m) for m in messages]
    for i, m in enumerate(messages):
        if not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise ValueError(f"'messages[{i}]' needs string 'role' and 'content'")
    if not question:
        users = [m["content"] for m in messages if m["role"] == "user"]
        if not users:
            raise ValueError("needs a 'question' or 'messages' with a user turn")
        question = users[-1]
    meta = {**(metadata or {}), "tools": function_specs(tools), "category": category}
    if len(messages) > 1 or (messages and messages[0]["content"] != question):
        meta["messages"] = messages
    return make_record(id=id, question=question, answer=json.dumps(list(answer)), task=TASK,
                       difficulty=difficulty, metadata=meta)


def is_function_calling(record: Mapping[str, Any]) -> bool:
    return record.get("task") == TASK and "tools" in (record.get("metadata") or {})


def row_to_fc_record(row: Mapping[str, Any], default_id: str) -> dict[str, Any]:
    """A user JSONL row ``{id, messages|question, tools, answer, difficulty?, category?}``."""
    for key in ("tools", "answer"):
        if key not in row:
            raise ValueError(f"missing required key '{key}'")
    messages = row.get("messages", [])
    if not isinstance(messages, list):
        raise ValueError("'messages' must be a list of {role, content}")
    question = row.get("question", "")
    if not isinstance(question, str):
        raise ValueError("'question' must be a string")
    return fc_record(id=str(row.get("id", default_id)), tools=row["tools"], answer=row["answer"],
                     question=question, messages=messages,
                     difficulty=row.get("difficulty", ""), category=row.get("category", ""))


def _first(allowed: list) -> Any:
    """The first allowed value, nested BFCL possible answers (dicts of allowed lists) resolved."""
    value = next((v for v in allowed if v != ""), "")
    if isinstance(value, dict):
        return {k: _first(v) for k, v in value.items() if isinstance(v, list) and v[0] != ""}
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return [{k: _first(x) for k, x in v.items() if isinstance(x, list) and x[0] != ""}
                for v in value]
    return value


def gold_calls(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One concrete answer: each gold call with the first allowed value of every argument
    (arguments whose first allowed value is ``""`` left out unless the spec requires them)."""
    specs = {f["name"]: f for f in (record.get("metadata") or {}).get("tools", [])}
    calls = []
    for call in json.loads(record["answer"]):
        (name, args), = call.items()
        required = ((specs.get(name) or {}).get("parameters") or {}).get("required") or []
        calls.append({"name": name, "arguments": {
            k: _first(v) for k, v in args.items() if v[0] != "" or k in required}})
    return calls


def hermes_completion(record: Mapping[str, Any]) -> str:
    """The gold answer written as Hermes calls (one ``<tool_call>`` per call); a no-call item
    answers in text."""
    calls = gold_calls(record)
    if not calls:
        return "<answer>None of the available functions can do this.</answer>"
    return "\n".join(f"<tool_call>\n{json.dumps(c, ensure_ascii=False)}\n</tool_call>"
                     for c in calls)


# ---------------------------------------------------------------------------------------- BFCL


def _category_of(path: Path) -> str:
    stem = path.stem
    return stem.split("BFCL_v4_", 1)[1] if "BFCL_v4_" in stem else stem


def is_bfcl_file(path: str | Path) -> bool:
    """Whether a JSON-lines file is in BFCL's question format (``question`` + ``function``)."""
    for _, row in iter_json_lines(Path(path)):
        return isinstance(row, dict) and "function" in row and isinstance(row.get("question"), list)
    return False


def read_bfcl(path: str | Path, answers_path: str | Path | None = None) -> list[dict[str, Any]]:
    """BFCL questions (``{id, question: [[{role, content}]], function}``) + their possible answers
    (default ``possible_answer/<same file name>`` beside them; none for ``irrelevance``, where no
    call is right) -> records. A bad row raises :class:`DataError` naming file, line and field."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: BFCL file not found")
    category = _category_of(path)
    answers_path = Path(answers_path) if answers_path else path.parent / "possible_answer" / path.name
    answers: dict[str, Any] = {}
    if answers_path.is_file():
        for lineno, row in iter_json_lines(answers_path):
            if not isinstance(row, dict) or "id" not in row or "ground_truth" not in row:
                raise DataError(f"{answers_path}:{lineno}: needs 'id' and 'ground_truth'")
            answers[row["id"]] = row["ground_truth"]
    elif "irrelevance" not in category:
        raise DataError(f"{answers_path}: possible answers of {path.name} not found")
    records = []
    for lineno, row in iter_json_lines(path):
        try:
            if not isinstance(row, dict):
                raise ValueError("a row must be a JSON object")
            for key in ("id", "question", "function"):
                if key not in row:
                    raise ValueError(f"missing required key '{key}'")
            turns = row["question"]
            if not isinstance(turns, list) or not turns or not isinstance(turns[0], list):
                raise ValueError("'question' must be a list of turns (lists of messages)")
            if len(turns) != 1:
                raise ValueError(f"'question' has {len(turns)} turns; only single-turn items "
                                 "are supported")
            if "irrelevance" in category:
                answer = []
            elif row["id"] in answers:
                answer = answers[row["id"]]
            else:
                raise ValueError(f"no possible answer for id {row['id']!r} in {answers_path}")
            records.append(fc_record(
                id=str(row["id"]), tools=row["function"], answer=answer, messages=turns[0],
                difficulty="hard" if category in _HARD_CATEGORIES else "easy",
                category=category))
        except ValueError as e:
            raise DataError(f"{path}:{lineno}: {e}") from e
    return records


def read_eval_file(path: str | Path) -> list[dict[str, Any]]:
    """An ``eval.files`` entry: a BFCL question file, or a task JSONL file (any task, function
    calling rows included)."""
    from toolrl_jax.data.records import read_task_jsonl

    if is_bfcl_file(path):
        return read_bfcl(path)
    return read_task_jsonl(path).records


# ----------------------------------------------------------------------------------- synthetic


def _fn(name: str, description: str, props: Mapping[str, tuple[str, str]],
        required: Sequence[str]) -> dict[str, Any]:
    return {"name": name, "description": description, "parameters": {
        "type": "dict", "required": list(required),
        "properties": {k: {"type": t, "description": d} for k, (t, d) in props.items()}}}


CITIES = ("Paris", "Tokyo", "Lima", "Oslo", "Cairo", "Quito", "Perth", "Dakar", "Hanoi", "Bern")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December")
FUNCTIONS: dict[str, dict[str, Any]] = {f["name"]: f for f in (
    _fn("get_weather", "Current weather in a city.",
        {"city": ("string", "City name."), "unit": ("string", "celsius or fahrenheit.")},
        ["city"]),
    _fn("set_timer", "Start a timer.", {"seconds": ("integer", "Duration in seconds.")},
        ["seconds"]),
    _fn("convert_currency", "Convert an amount of money.",
        {"amount": ("float", "Amount."), "source": ("string", "ISO code to convert from."),
         "target": ("string", "ISO code to convert to.")}, ["amount", "source", "target"]),
    _fn("book_table", "Reserve a restaurant table.",
        {"city": ("string", "City."), "date": ("string", "Date as YYYY-MM-DD."),
         "people": ("integer", "Number of guests.")}, ["city", "date", "people"]),
    _fn("route_distance", "Plan a running route of a given length.",
        {"meters": ("integer", "Length in meters."), "city": ("string", "City.")},
        ["meters", "city"]),
)}
CURRENCIES = ("USD", "EUR", "JPY", "GBP", "CHF")
IRRELEVANT_QUESTIONS = (
    "Who wrote the novel {x}?", "Translate '{x}' into Latin.", "Write a haiku about {x}.",
    "What is the capital of the country where {x} was born?", "Explain how {x} works.",
)
TOPICS = ("Dune", "photosynthesis", "the tide", "Ada Lovelace", "a sundial", "winter")


def _easy(rng: random.Random) -> tuple[str, list[str], list[dict]]:
    kind = rng.choice(("get_weather", "set_timer", "convert_currency", "book_table"))
    if kind == "get_weather":
        city = rng.choice(CITIES)
        if rng.random() < 0.5:
            return (f"What is the weather in {city}?", [kind],
                    [{kind: {"city": [city], "unit": ["", "celsius"]}}])
        unit = rng.choice(("celsius", "fahrenheit"))
        return (f"What is the weather in {city} in {unit}?", [kind],
                [{kind: {"city": [city], "unit": [unit]}}])
    if kind == "set_timer":
        s = rng.randint(5, 600)
        return f"Set a timer for {s} seconds.", [kind], [{kind: {"seconds": [s]}}]
    if kind == "convert_currency":
        a, b = rng.sample(CURRENCIES, 2)
        amount = rng.randint(2, 900)
        return (f"Convert {amount} {a} to {b}.", [kind],
                [{kind: {"amount": [float(amount)], "source": [a], "target": [b]}}])
    city, people = rng.choice(CITIES), rng.randint(1, 9)
    month, day = rng.randint(1, 12), rng.randint(1, 28)
    date = f"2025-{month:02d}-{day:02d}"
    return (f"Book a table in {city} for {people} people on {date}.", [kind],
            [{kind: {"city": [city], "date": [date], "people": [people]}}])


def _hard(rng: random.Random) -> tuple[str, list[str], list[dict]]:
    kind = rng.choice(("parallel", "timer_minutes", "route_km", "date_words"))
    distractors = rng.sample([n for n in FUNCTIONS if n not in ("set_timer",)], 2)
    if kind == "parallel":
        c1, c2 = rng.sample(CITIES, 2)
        return (f"What is the weather in {c1} and in {c2}?", ["get_weather", *distractors],
                [{"get_weather": {"city": [c1], "unit": ["", "celsius"]}},
                 {"get_weather": {"city": [c2], "unit": ["", "celsius"]}}])
    if kind == "timer_minutes":
        m = rng.randint(2, 90)
        return (f"Set a timer for {m} minutes.", ["set_timer", *distractors],
                [{"set_timer": {"seconds": [60 * m]}}])
    if kind == "route_km":
        km, city = rng.randint(2, 42), rng.choice(CITIES)
        names = list(dict.fromkeys(["route_distance", *distractors, "set_timer"]))
        return (f"Plan a {km} km running route in {city}.", names,
                [{"route_distance": {"meters": [1000 * km], "city": [city]}}])
    city, people = rng.choice(CITIES), rng.randint(2, 9)
    month, day = rng.randint(1, 12), rng.randint(1, 28)
    names = list(dict.fromkeys(["book_table", *distractors]))
    return (f"Book a table for {people} people in {city} on {MONTHS[month - 1]} {day}, 2025.",
            names, [{"book_table": {"city": [city], "date": [f"2025-{month:02d}-{day:02d}"],
                                    "people": [people]}}])


def _irrelevant(rng: random.Random) -> tuple[str, list[str], list[dict]]:
    question = rng.choice(IRRELEVANT_QUESTIONS).format(x=rng.choice(TOPICS))
    return question, rng.sample(list(FUNCTIONS), 2), []


def generate(split: str, num: int, *, seed: int, hard_fraction: float, split_seed: int,
             heldout_fraction: float, irrelevant_fraction: float = 0.2) -> list[dict[str, Any]]:
    """``num`` synthetic function-calling records of ``split``: ``round(num * hard_fraction)``
    hard, ``round(num * irrelevant_fraction)`` of the rest irrelevant, the others easy. Items
    are drawn until their question falls in the split (held-out is keyed by question text)."""
    check_split(split)
    rng = random.Random(f"{TASK}:{split}:{seed}")
    num_hard = round(num * hard_fraction)
    num_irr = round((num - num_hard) * irrelevant_fraction)
    kinds = ["hard"] * num_hard + ["irrelevant"] * num_irr + ["easy"] * (num - num_hard - num_irr)
    rng.shuffle(kinds)
    draw = {"easy": _easy, "hard": _hard, "irrelevant": _irrelevant}
    records = []
    for i, kind in enumerate(kinds):
        for _ in range(_MAX_REJECTIONS):
            question, names, answer = draw[kind](rng)
            if split_of(question, split_seed, heldout_fraction) == split:
                break
        else:
            raise ValueError(f"could not draw a {kind} function-calling item in split {split!r}")
        names = list(names)
        rng.shuffle(names)
        records.append(fc_record(
            id=f"{TASK}-{split}-{i:05d}", question=question,
            tools=[FUNCTIONS[n] for n in names], answer=answer,
            difficulty="hard" if kind == "hard" else "easy",
            category="irrelevance" if kind == "irrelevant" else kind))
    return records
