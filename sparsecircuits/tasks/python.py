"""The 20 Python contrast-pair tasks (METHOD 5): next-token choices in small, realistic snippets.

Each generator writes two twin snippets that differ only in the detail deciding the next token
(the opening quote of a string, the nesting depth of a list, ...), around random identifiers,
values and 0-4 unrelated distractor lines. Every answer is the token the BPE would naturally
produce at that point: the pre-split keeps a punctuation run together with its trailing newlines,
so a statement-ending bracket is `]]\\n`, not `]]`, while `')` is used only where the line goes on
after it. Each twin also carries its natural continuation (the code that follows the answer), so
tests can check that `prompt + answer + continuation` tokenises with the answer as one token and
compiles.
"""
from __future__ import annotations

import random
from functools import partial
from typing import Callable, NamedTuple

from .base import Example, Task


class Twin(NamedTuple):
    """One side of a contrast pair: the prompt, its answer and the code that naturally follows it."""

    prompt: str
    correct: str
    continuation: str


PairWithContinuations = tuple[tuple[Example, str], tuple[Example, str]]

IND = "    "

# Lower-case letter-only words: identifiers are these, pairs of these (`user_count`) or these with
# a digit (`buf2`). None is a keyword, a common builtin, `self` or a task's own keyword.
_WORDS = (
    "user", "item", "row", "line", "file", "name", "path", "key", "value", "count", "total", "size",
    "index", "node", "data", "buf", "text", "word", "char", "token", "result", "config", "cache",
    "queue", "stack", "entry", "record", "field", "header", "page", "batch", "chunk", "block",
    "frame", "score", "label", "tag", "level", "depth", "offset", "limit", "start", "end", "step",
    "width", "height", "color", "port", "host", "url", "msg", "err", "request", "response",
    "session", "client", "server", "parent", "child", "left", "right", "prev", "num", "idx", "pos",
    "col", "rows", "cols", "items", "values", "keys", "names", "parts", "lines", "words", "files",
    "paths", "args", "opts", "params", "state", "status", "mode", "flag", "done", "found", "ready",
    "valid", "target", "source", "output", "table", "column", "query", "event", "handler", "task",
    "job", "worker", "model", "image", "pixel", "point", "edge", "graph", "weight", "delta", "seed",
)
_SHORT = ("x", "y", "i", "j", "k", "n", "s", "df", "tmp", "val", "obj", "res", "acc", "ctx", "fp")

# Names that can themselves be an answer (`self.color = color`, `a, b = b, a`): each ` name` is a
# candidate, so the pool is fixed and letter-only.
NAMES = (
    "name", "size", "count", "total", "value", "index", "key", "data", "items", "path", "text",
    "label", "color", "width", "height", "depth", "level", "limit", "offset", "start", "end", "step",
    "score", "parent", "left", "right", "first", "last", "prev", "node", "head", "tail", "low",
    "high", "x", "y", "a", "b", "i", "j",
)

_PHRASE_WORDS = (
    "invalid", "input", "missing", "value", "for", "the", "file", "not", "found", "loaded", "saving",
    "results", "to", "processing", "item", "done", "error", "reading", "config", "total", "count",
    "of", "rows", "skipping", "empty", "line", "unknown", "key", "connection", "failed", "retrying",
    "request", "user", "started", "server", "on", "port", "hello", "world", "bad", "status", "code",
)
_EXTENSIONS = ("txt", "json", "csv", "log", "cfg", "py", "yaml", "md", "ini", "dat")
_THINGS = ("config", "data", "cache", "settings", "results", "model", "state", "index", "report",
           "table", "records", "weights", "history", "users", "manifest")


def _word(rng: random.Random) -> str:
    return rng.choice(_WORDS)


def _ident(rng: random.Random) -> str:
    """A plausible variable name: `rows`, `user_count`, `buf2` or `x`."""
    r = rng.random()
    if r < 0.45:
        return _word(rng)
    if r < 0.75:
        return f"{_word(rng)}_{_word(rng)}"
    if r < 0.87:
        return f"{rng.choice(_WORDS + _SHORT)}{rng.randint(0, 9)}"
    return rng.choice(_SHORT)


def _idents(rng: random.Random, k: int, avoid=()) -> list[str]:
    """`k` distinct identifiers, none of them in `avoid`."""
    out: list[str] = []
    while len(out) < k:
        name = _ident(rng)
        if name not in out and name not in avoid:
            out.append(name)
    return out


def _camel(rng: random.Random) -> str:
    return "".join(w.capitalize() for w in rng.sample(_WORDS, rng.randint(1, 2)))


def _int(rng: random.Random) -> str:
    return str(rng.choice((rng.randint(0, 9), rng.randint(10, 99), rng.randint(100, 999))))


def _phrase(rng: random.Random) -> str:
    """One to four words, the kind of text in a message string; ends with a letter."""
    text = " ".join(rng.choice(_PHRASE_WORDS) for _ in range(rng.randint(1, 4)))
    return text.capitalize() if rng.random() < 0.4 else text


def _str(rng: random.Random) -> str:
    q = rng.choice("'\"")
    return f"{q}{rng.choice((_word(rng), _phrase(rng)))}{q}"


def _value(rng: random.Random) -> str:
    """A random literal: int, float, string, list, None or a bool."""
    kind = rng.randrange(7)
    if kind == 0:
        return _int(rng)
    if kind == 1:
        return f"-{rng.randint(1, 99)}" if rng.random() < 0.5 else f"{rng.randint(0, 99)}.{rng.randint(0, 9)}"
    if kind == 2:
        return _str(rng)
    if kind == 3:
        return "[" + ", ".join(_int(rng) for _ in range(rng.randint(0, 4))) + "]"
    if kind == 4:
        return "None"
    if kind == 5:
        return rng.choice(("True", "False"))
    return _ident(rng)


def _cond(rng: random.Random, avoid=()) -> str:
    """A condition ending in a letter or digit, so nothing after it merges with it."""
    x, y = _idents(rng, 2, avoid)
    return rng.choice((
        x, f"not {x}", f"{x} > {_int(rng)}", f"{x} is None", f"{x} is not None", f"{x} in {y}",
        f"len({x}) > {_int(rng)}", f"{x} == {_int(rng)}", f"{x} < {y}", f"{x}.{y}",
    ))


def _statement(rng: random.Random, avoid=(), comments: bool = False) -> str:
    """One line of unrelated but valid-looking code (no indentation, no newline)."""
    a, b, c = _idents(rng, 3, avoid)
    makers: list[Callable[[], str]] = [
        lambda: f"{a} = {_int(rng)}",
        lambda: f"{a} = {b} + {_int(rng)}",
        lambda: f"{a} = {_value(rng)}",
        lambda: f"{a} = len({b})",
        lambda: f"{a} = {b}[{rng.randint(0, 9)}]",
        lambda: f"{a}.append({b})",
        lambda: f"print({a}, {b})",
        lambda: f"{a} = {b}.get({_str(rng)})",
        lambda: f"{a} = {b}({c})",
        lambda: f"{a} += {_int(rng)}",
        lambda: f"{a} = {b} * {c}",
        lambda: f"{a} = {{}}",
        lambda: f"{a} = {b}.{c}",
        lambda: f"{a} = [{c} * 2 for {c} in {b}]",
        lambda: f"{a}.update({b}={c})",
    ]
    if comments:
        makers.append(lambda: "# " + _phrase(rng))
    return rng.choice(makers)()


def _distractors(rng: random.Random, indent: str, n: int | None = None, avoid=()) -> str:
    """0-4 (or `n`) lines of unrelated code at `indent`, each ending in a newline."""
    n = rng.randint(0, 4) if n is None else n
    return "".join(f"{indent}{_statement(rng, avoid, comments=True)}\n" for _ in range(n))


def _scope(rng: random.Random, avoid=(), in_function: bool = False) -> tuple[str, str]:
    """A random enclosing context (module, function, method or branch) with 0-4 distractor lines:
    the code so far and the indentation of the next line. `in_function` rules out module level."""
    kinds = ("function", "function", "method", "branch") + (() if in_function else ("module",))
    kind = rng.choice(kinds)
    n = rng.randint(0, 4)
    if kind == "module":
        return _distractors(rng, "", n, avoid), ""
    f, *params = _idents(rng, 1 + rng.randint(0, 3), avoid)
    if kind == "function":
        head, ind = f"def {f}({', '.join(params)}):\n", IND
    elif kind == "method":
        head, ind = f"class {_camel(rng)}:\n{IND}def {f}({', '.join(['self', *params])}):\n", IND * 2
    else:
        head, ind = f"def {f}({', '.join(params)}):\n{IND}if {_cond(rng, avoid)}:\n", IND * 2
    return head + _distractors(rng, ind, n, avoid), ind


# ---------------------------------------------------------------------------------------------
# The tasks: each returns two twins whose answers swap.


def _single_double_quote(rng: random.Random) -> tuple[Twin, Twin]:
    """A string argument closed by `')` or `")`; the line goes on after the parenthesis."""
    head, ind = _scope(rng)
    v, w, f = _idents(rng, 3)
    filename = f"{_ident(rng)}.{rng.choice(_EXTENSIONS)}"
    call, content, rest = rng.choice((
        ("with open(", filename, f" as {f}:\n{ind}{IND}{v} = {f}.read()\n"),
        (f"{v} = {w}.get(", _ident(rng), f" or {_value(rng)}\n"),
        (f"if {v}.startswith(", _phrase(rng), f" and {w}:\n{ind}{IND}{_statement(rng)}\n"),
        (f"if {v}.endswith(", _phrase(rng), f" or {w}:\n{ind}{IND}{_statement(rng)}\n"),
        (f"{v} = {w}.count(", _phrase(rng), f" + {_int(rng)}\n"),
        (f"{v} = {w}.find(", _phrase(rng), " >= 0\n"),
        ("raise ValueError(", _phrase(rng), " from None\n"),
        (f"{v} = os.environ.get(", _word(rng).upper(), f" or {_str(rng)}\n"),
        (f"{v} = getattr({w}, ", _ident(rng), f" if {w} else None\n"),
    ))
    return tuple(Twin(f"{head}{ind}{call}{q}{content}", f"{q})", rest) for q in ("'", '"'))


def _bracket_counting(rng: random.Random) -> tuple[Twin, Twin]:
    """A list literal closed at the end of its statement: `]]\\n` when nested, `]\\n` when flat."""
    head, ind = _scope(rng)
    v = _ident(rng)
    lead = rng.choice((f"{v} = ", "return ")) if ind else f"{v} = "
    kind = rng.randrange(3)

    def elem() -> str:
        return (_int(rng), _ident(rng), f"{rng.randint(0, 9)}.{rng.randint(0, 99)}")[kind]

    def elems(k: int) -> str:
        return ", ".join(elem() for _ in range(k))

    done = "".join(f"[{elems(rng.randint(1, 4))}], " for _ in range(rng.randint(0, 3)))
    last = elems(rng.randint(1, 5))
    rest = f"{ind}{_statement(rng)}\n"
    nested = Twin(f"{head}{ind}{lead}[{done}[{last}", "]]\n", rest)
    flat = Twin(f"{head}{ind}{lead}{done}[{last}", "]\n", rest)
    return nested, flat


def _set_or_string(rng: random.Random, var: str | None = None) -> tuple[Twin, Twin]:
    """A variable built in a loop: `.add` if it started as `set()`, ` +=` if as an empty string."""
    v = var or _ident(rng)
    f, items, x = _idents(rng, 3, avoid={v})
    empty = rng.choice(("''", '""'))
    mid = _distractors(rng, IND, avoid={v, items, x})
    loop = f"{IND}for {x} in {items}:\n"
    body = IND * 2
    if rng.random() < 0.5:
        loop += f"{body}if {rng.choice((x, f'not {x}', f'{x} not in {v}', f'len({x}) > {_int(rng)}'))}:\n"
        body += IND
    loop += _distractors(rng, body, rng.randint(0, 1), avoid={v, items, x})
    tail = f"{IND}return {v}\n"

    def twin(init: str, answer: str, rest: str) -> Twin:
        return Twin(f"def {f}({items}):\n{IND}{v} = {init}\n{mid}{loop}{body}{v}", answer, rest + tail)

    return twin("set()", ".add", f"({x})\n"), twin(empty, " +=", f" {x}\n")


def _final_kwarg(rng: random.Random) -> tuple[Twin, Twin]:
    """The last parameter of a def: `=None` if the earlier ones had defaults, else `):\\n`."""
    k = rng.randint(1, 4)
    f, positional, *params = _idents(rng, k + 3)
    earlier, last = params[:-1], params[-1]
    method = rng.random() < 0.4
    ind = IND if method else ""
    head = (f"class {_camel(rng)}:\n" if method else "") + _distractors(rng, ind)
    first = (["self"] if method else []) + ([positional] if rng.random() < 0.3 else [])
    body = f"{ind}{IND}return {rng.choice(params)}\n"

    def twin(default: str, answer: str, rest: str) -> Twin:
        args = ", ".join(first + [p + default for p in earlier] + [last])
        return Twin(f"{head}{ind}def {f}({args}", answer, rest)

    return twin("=None", "=None", f"):\n{body}"), twin("", "):\n", body)


def _class_init(rng: random.Random) -> tuple[Twin, Twin]:
    """`self.x = ` in an `__init__` full of `self.p = p`: copy the parameter the attribute names."""
    params = rng.sample(NAMES, rng.randint(3, 6))
    order = params[:] if rng.random() < 0.6 else rng.sample(params, len(params))
    m = rng.randint(0, len(params) - 2)
    x, y = rng.sample(order[m:], 2)
    under = "_" if rng.random() < 0.3 else ""
    n_defaults = rng.randint(0, len(params) - 1)
    sig = ", ".join(["self"] + params[: len(params) - n_defaults]
                    + [f"{p}={_value(rng)}" for p in params[len(params) - n_defaults:]])
    base = rng.choice(("", "(object)", f"({_camel(rng)})"))
    head = (_distractors(rng, "") + f"class {_camel(rng)}{base}:\n"
            + (f'{IND}"""{_phrase(rng)}."""\n\n' if rng.random() < 0.3 else "")
            + f"{IND}def __init__({sig}):\n"
            + (f"{IND * 2}super().__init__()\n" if base and rng.random() < 0.5 else "")
            + "".join(f"{IND * 2}self.{under}{p} = {p}\n" for p in order[:m]))

    def twin(attr: str) -> Twin:
        rest = "".join(f"\n{IND * 2}self.{under}{p} = {p}" for p in order[m:] if p != attr) + "\n"
        return Twin(f"{head}{IND * 2}self.{under}{attr} =", f" {attr}", rest)

    return twin(x), twin(y)


def _with_as(rng: random.Random) -> tuple[Twin, Twin]:
    """`open(...)` in a with-statement closes with `)` (` as` follows) and in an assignment
    with `)\\n`; the natural token after an assignment's `)` is `)\\n`, so ` as` itself can't be
    the choice."""
    head, ind = _scope(rng)
    f, v, path, mode, enc, d = _idents(rng, 6)
    args = rng.choice((path, f"{path}, {mode}", f"{path}, encoding={enc}", f"{path}, 'r', encoding={enc}",
                       f"os.path.join({d}, {path}), {mode}", f"{d}.{path}"))
    use = rng.choice((f"{v} = {f}.read()", f"{v} = json.load({f})", f"{v} = {f}.readlines()",
                      f"{f}.write({v})", f"{v} = {f}.readline().strip()"))
    return (Twin(f"{head}{ind}with open({args}", ")", f" as {f}:\n{ind}{IND}{use}\n"),
            Twin(f"{head}{ind}{f} = open({args}", ")\n", f"{ind}{use}\n"))


def _bracket_brace(rng: random.Random) -> tuple[Twin, Twin]:
    """The first element of a literal: `:` follows it in a dict, `,` (or `,\\n`) in a list."""
    head, ind = _scope(rng)
    v, fn = _idents(rng, 2)
    key, other = (_idents(rng, 2) if rng.random() < 0.7 else [_int(rng), _int(rng)])
    lead, close = rng.choice(((f"{v} = ", ""), (f"{fn}(", ")"), (f"{v} = {fn}(", ")")))
    if ind and rng.random() < 0.2:
        lead, close = "return ", ""
    val = _value(rng)
    if rng.random() < 0.3:
        inner = f"\n{ind}{IND}"
        return (Twin(f"{head}{ind}{lead}{{{inner}{key}", ":", f" {val},\n{ind}}}{close}\n"),
                Twin(f"{head}{ind}{lead}[{inner}{key}", ",\n", f"{ind}{IND}{other},\n{ind}]{close}\n"))
    return (Twin(f"{head}{ind}{lead}{{{key}", ":", f" {val}}}{close}\n"),
            Twin(f"{head}{ind}{lead}[{key}", ",", f" {other}]{close}\n"))


_READ_WRITE_VERBS = (("load", "save"), ("read", "write"), ("load", "dump"), ("import", "export"),
                     ("parse", "write"), ("fetch", "store"), ("restore", "backup"), ("get", "put"))
_IN_OUT = (("input", "output"), ("in", "out"), ("src", "dst"), ("source", "target"), ("read", "write"))
_PATH_NOUNS = ("path", "file", "filename", "fname", "name")


def _with_open(rng: random.Random) -> tuple[Twin, Twin]:
    """The mode in `open(path, '`: `r` for a file being read, `w` for one being written; the role
    shows in the function's verb or the variable's name. The quote is its own token (` '`), so the
    choice is the letter."""
    f, v = _idents(rng, 2)
    if rng.random() < 0.5:
        pair = rng.choice(_READ_WRITE_VERBS)
        thing = rng.choice(_THINGS)
        path = rng.choice(("path", "filename", "fname", "file_path", "location", f"{thing}_path"))
        params = path + rng.choice(("", f", {v}"))
        mid = _distractors(rng, IND, avoid={v, f, path})
        names = [(f"def {verb}_{thing}({params}):\n{mid}", path) for verb in pair]
        ind = IND
    else:
        pair = rng.choice(_IN_OUT)
        noun = rng.choice(_PATH_NOUNS)
        head, ind = _scope(rng, avoid={v, f})
        names = [(head, f"{role}_{noun}") for role in pair]
    extra = rng.choice(("", ", encoding='utf-8'", f", encoding={_ident(rng)}"))
    uses = (f"{v} = {f}.read()", f"{f}.write({v})")
    return tuple(Twin(f"{pre}{ind}with open({p}, '", mode, f"'{extra}) as {f}:\n{ind}{IND}{use}\n")
                 for (pre, p), mode, use in zip(names, ("r", "w"), uses))


def _for_while(rng: random.Random) -> tuple[Twin, Twin]:
    """A loop header over one name: ` in` after `for name`, `:\\n` after `while name`."""
    head, ind = _scope(rng)
    x, xs = _idents(rng, 2)
    body = f"{ind}{IND}{_statement(rng)}\n"
    return (Twin(f"{head}{ind}for {x}", " in", f" {xs}:\n{body}"),
            Twin(f"{head}{ind}while {x}", ":\n", body))


def _cond_on(rng: random.Random, v: str) -> str:
    """A condition starting with `v` and ending in a letter or digit."""
    w = _ident(rng)
    return rng.choice((f"{v} > {_int(rng)}", f"{v} < {_int(rng)}", f"{v} == {_int(rng)}", f"{v} is None",
                       f"{v} in {w}", f"{v} < {w}", f"{v} >= {w}", f"{v}.{w}"))


def _else_elif(rng: random.Random) -> tuple[Twin, Twin]:
    """After an if-block: `else` takes `:\\n`, `elif` the tested name, starting a new condition."""
    head, ind = _scope(rng)
    v = rng.choice(NAMES)
    chain = f"{ind}if {_cond_on(rng, v)}:\n{ind}{IND}{_statement(rng)}\n"
    if rng.random() < 0.4:
        chain += f"{ind}elif {_cond_on(rng, v)}:\n{ind}{IND}{_statement(rng)}\n"
    body = f"{ind}{IND}{_statement(rng)}\n"
    return (Twin(f"{head}{chain}{ind}else", ":\n", body),
            Twin(f"{head}{chain}{ind}elif", f" {v}", _cond_on(rng, v)[len(v):] + ":\n" + body))


_VERBS = ("Loaded", "Saved", "Processing", "Found", "Skipping", "Total", "Reading", "Writing", "Got",
          "Starting", "Finished", "Removed", "Created", "Updated", "Sending", "Received")


def _fstring_brace(rng: random.Random) -> tuple[Twin, Twin]:
    """A print of a message and a value: ` {` opens a placeholder in an f-string, while a plain
    string closes (`",`) and passes the value as a second argument."""
    head, ind = _scope(rng)
    q = rng.choice("'\"")
    v = _ident(rng)
    msg = rng.choice(_VERBS) + "".join(f" {rng.choice(_PHRASE_WORDS)}" for _ in range(rng.randint(0, 3)))
    tail = rng.choice(("", f" {rng.choice(_WORDS)}"))
    plain_tail = f", {q}{tail.strip()}{q}" if tail else ""
    return (Twin(f"{head}{ind}print(f{q}{msg}", " {", f"{v}}}{tail}{q})\n"),
            Twin(f"{head}{ind}print({q}{msg}", f"{q},", f" {v}{plain_tail})\n"))


def _if_ternary(rng: random.Random) -> tuple[Twin, Twin]:
    """The end of an `if` condition: `:\\n` for a statement, ` else` inside a conditional expression."""
    head, ind = _scope(rng)
    v = _ident(rng)
    cond = _cond(rng, avoid={v})
    val = rng.choice((_value(rng), _ident(rng)))
    return (Twin(f"{head}{ind}if {cond}", ":\n", f"{ind}{IND}{_statement(rng)}\n"),
            Twin(f"{head}{ind}{v} = {val} if {cond}", " else", f" {_value(rng)}\n"))


def _var_swap(rng: random.Random) -> tuple[Twin, Twin]:
    """`a, b = b, ` completes a swap with the first name."""
    head, ind = _scope(rng)
    a, b = rng.sample(NAMES, 2)
    guard = rng.random() < 0.5
    inner = ind + IND if guard else ind
    pre = head + (f"{ind}if {a} > {b}:\n" if guard else "")
    rest = "\n" + (f"{ind}return {a}, {b}\n" if ind else f"print({a}, {b})\n")
    return (Twin(f"{pre}{inner}{a}, {b} = {b},", f" {a}", rest),
            Twin(f"{pre}{inner}{b}, {a} = {a},", f" {b}", rest))


_OPENERS = ("if {c}:", "while {c}:", "with open({p}) as {f}:", "for {y} in {ys}:")


def _indent_for(rng: random.Random) -> tuple[Twin, Twin]:
    """The indentation of a for-loop's body, one level deeper than the `for` line, which sits at
    depth 1, 2 or 3. The indentation token is one space short (the last space starts the next word)."""
    f, param, x, acc = _idents(rng, 4)
    lines = f"def {f}({param}):\n" + _distractors(rng, IND, avoid={x, acc})
    deepest = rng.randint(2, 3)
    for depth in range(1, deepest):
        p, fh, y, ys = _idents(rng, 4, avoid={x, acc})
        opener = rng.choice(_OPENERS).format(c=_cond(rng, {x, acc}), p=p, f=fh, y=y, ys=ys)
        lines += IND * depth + opener + "\n"
    lines += IND * deepest + _statement(rng, avoid={x, acc}) + "\n"
    body = rng.choice((f"{acc}.append({x})", f"{acc} += {x}", f"print({x})", f"{acc}[{x}] = {_value(rng)}"))
    depths = rng.sample(range(1, deepest + 1), 2)
    return tuple(Twin(f"{lines}{IND * d}for {x} in {param}:\n", " " * (4 * d + 3), f" {body}\n")
                 for d in depths)


def _lambda_func(rng: random.Random) -> tuple[Twin, Twin]:
    """After `lambda name` comes `:`; after `def name` the parameter list, here `():\\n`
    (`(` alone is never the natural token: it merges with a following word or punctuation)."""
    head, ind = _scope(rng)
    name, v = _idents(rng, 2)
    lead = rng.choice((f"{v} = ", "return ")) if ind else f"{v} = "
    expr = rng.choice((f"{name} + 1", f"{name}.{_ident(rng)}", f"{name}[{rng.randint(0, 3)}]", f"not {name}",
                       f"{name} * 2", f"len({name})", f"{name}.strip()", f"{name} is None"))
    return (Twin(f"{head}{ind}{lead}lambda {name}", ":", f" {expr}\n"),
            Twin(f"{head}{ind}def {name}", "():\n", f"{ind}{IND}return {_value(rng)}\n"))


def _if_equals(rng: random.Random) -> tuple[Twin, Twin]:
    """After a name: ` ==` when it starts an if-condition, ` =` when it starts an assignment."""
    head, ind = _scope(rng)
    v = _ident(rng)
    val = rng.choice((_int(rng), _str(rng), _ident(rng)))
    return (Twin(f"{head}{ind}if {v}", " ==", f" {val}:\n{ind}{IND}{_statement(rng)}\n"),
            Twin(f"{head}{ind}{v}", " =", f" {val}\n"))


_INDEX_NAMES = ("i", "idx", "index", "n", "k", "j", "pos", "lineno", "num", "step", "row_idx", "count")


def _enumerate_range(rng: random.Random) -> tuple[Twin, Twin]:
    """`for i, x in` takes ` enumerate`, `for i in` takes ` range`."""
    head, ind = _scope(rng)
    i = rng.choice(_INDEX_NAMES)
    x, xs = _idents(rng, 2, avoid={i})
    body = f"{ind}{IND}{_statement(rng)}\n"
    return (Twin(f"{head}{ind}for {i}, {x} in", " enumerate", f"({xs}):\n{body}"),
            Twin(f"{head}{ind}for {i} in", " range", f"(len({xs})):\n{body}"))


def _var_if(rng: random.Random) -> tuple[Twin, Twin]:
    """After `True`/`False`: `:\\n` ends `if x == True`, a newline ends `x = True`."""
    head, ind = _scope(rng)
    v = _ident(rng)
    b = rng.choice(("True", "False"))
    return (Twin(f"{head}{ind}if {v} == {b}", ":\n", f"{ind}{IND}{_statement(rng)}\n"),
            Twin(f"{head}{ind}{v} = {b}", "\n", f"{ind}{_statement(rng)}\n"))


def _while_return_true(rng: random.Random) -> tuple[Twin, Twin]:
    """After `True`: `:\\n` ends `while True`, a newline ends `return True`."""
    head, ind = _scope(rng, in_function=True)
    guard = rng.random() < 0.5
    inner = ind + IND if guard else ind
    pre = head + (f"{ind}if {_cond(rng)}:\n" if guard else "")
    after = f"{ind}return False\n" if guard else ""
    return (Twin(f"{pre}{inner}while True", ":\n", f"{inner}{IND}{_statement(rng)}\n{inner}{IND}break\n"),
            Twin(f"{pre}{inner}return True", "\n", after))


_SPECS: dict[str, tuple[str, Callable[[random.Random], tuple[Twin, Twin]], tuple[str, ...]]] = {
    "single_double_quote": ("Close a string with the quote that opened it.",
                            _single_double_quote, ("')", '")')),
    "bracket_counting": ("Close a list at the end of its line with `]]` if nested, `]` if flat.",
                         _bracket_counting, ("]]\n", "]\n")),
    "set_or_string": ("Extend a variable with `.add` if it is a set, `+=` if it is a string.",
                      _set_or_string, (".add", " +=")),
    "set_or_string_fixedvarname": ("Extend `current` with `.add` if it is a set, `+=` if it is a string.",
                                   partial(_set_or_string, var="current"), (".add", " +=")),
    "final_kwarg": ("Give the last parameter a default if the earlier ones had defaults.",
                    _final_kwarg, ("=None", "):\n")),
    "class_init": ("In `__init__`, assign `self.x` the parameter of the same name.",
                   _class_init, tuple(f" {n}" for n in NAMES)),
    "with_as": ("Close `open(...)` with `)` in a with-statement, `)\\n` in an assignment.",
                _with_as, (")", ")\n")),
    "bracket_brace": ("After the first element, `:` in a dict and `,` in a list.",
                      _bracket_brace, (":", ",", ",\n")),
    "with_open": ("Open a file with mode `r` to read it, `w` to write it.",
                  _with_open, ("r", "w")),
    "for_while": ("After the loop variable, ` in` in a for-header and `:` in a while-header.",
                  _for_while, (" in", ":\n")),
    "else_elif": ("After an if-block, `:` follows `else` and a condition follows `elif`.",
                  _else_elif, (":\n",) + tuple(f" {n}" for n in NAMES)),
    "fstring_brace": ("In a print, an f-string opens a placeholder where a plain string ends.",
                      _fstring_brace, (" {", "',", '",')),
    "if_ternary": ("End an `if` condition with `:` unless it is inside a conditional expression.",
                   _if_ternary, (":\n", " else")),
    "var_swap": ("Complete the swap `a, b = b, a`.",
                 _var_swap, tuple(f" {n}" for n in NAMES)),
    "indent_for": ("Indent a for-loop's body one level deeper than the `for`.",
                   _indent_for, tuple(" " * (4 * d + 3) for d in (1, 2, 3))),
    "lambda_func": ("After the name, `:` for `lambda` and a parameter list for `def`.",
                    _lambda_func, (":", "():\n")),
    "if_equals": ("Use `==` in an if-condition and `=` in an assignment.",
                  _if_equals, (" ==", " =")),
    "enumerate_range": ("Loop with `enumerate` over two loop variables, `range` over one.",
                        _enumerate_range, (" enumerate", " range")),
    "var_if": ("End `if x == True` with `:` and `x = True` with a newline.",
               _var_if, (":\n", "\n")),
    "while_return_true": ("End `while True` with `:` and `return True` with a newline.",
                          _while_return_true, (":\n", "\n")),
}


def pair_with_continuations(name: str, rng: random.Random) -> PairWithContinuations:
    """One contrast pair of task `name`, each example with the code that naturally follows its
    correct answer (draws from `rng` exactly as the task's `make` does)."""
    a, b = _SPECS[name][1](rng)
    return ((Example(a.prompt, a.correct, b.correct), a.continuation),
            (Example(b.prompt, b.correct, a.correct), b.continuation))


def _make(name: str, rng: random.Random) -> tuple[Example, Example]:
    (a, _), (b, _) = pair_with_continuations(name, rng)
    return a, b


PYTHON_TASKS: dict[str, Task] = {
    name: Task(name, description, partial(_make, name), candidates)
    for name, (description, _, candidates) in _SPECS.items()
}
