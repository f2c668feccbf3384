"""Seeded degraded text for benchmarks, tests and the demo, and planted-junk cases built from real corpora.

Generators: spam-like e-mails from templates with random fields, web boilerplate, shuffled words, keyword
stuffing, near copies and off-language text. A planted-junk case mixes on-topic rows of one real corpus
(shared/DATA.md) with junk rows of several kinds and keeps a disjoint held-out on-topic sample as the target.
Every function is deterministic for its `seed`; nothing reads a global RNG.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl

from curate import corpora
from curate._validation import check_interval, check_option
from curate.errors import InputError

JunkKind = Literal["spam", "boilerplate", "shuffled", "stuffing", "off_language", "other_domain", "near_copy"]
JUNK_KINDS: tuple[JunkKind, ...] = (
    "spam",
    "boilerplate",
    "shuffled",
    "stuffing",
    "off_language",
    "other_domain",
    "near_copy",
)
CaseName = Literal["wiki_science", "wiki_arts", "bbc", "sotu"]
CASES: tuple[CaseName, ...] = ("wiki_science", "wiki_arts", "bbc", "sotu")
# junk a target-similarity signal should see; near copies of on-topic rows are dedup's job, not this one's
DEFAULT_JUNK: tuple[JunkKind, ...] = (
    "spam",
    "boilerplate",
    "shuffled",
    "stuffing",
    "off_language",
    "other_domain",
)

_FIRST = ("James", "Mary", "Robert", "Linda", "Ahmed", "Chen", "Olga", "Carlos", "Fatima", "Kevin", "Grace")
_LAST = ("Smith", "Johnson", "Okafor", "Williams", "Brown", "Garcia", "Nguyen", "Miller", "Kowalski", "Lee")
_TITLES = ("Mr.", "Dr.", "Barrister", "Agent", "Manager", "Prince")
_PRODUCTS = ("V1agra", "C1alis", "Rolex replicas", "diet pills", "forex signals", "crypto tokens", "vitamins")
_SYLL = ("best", "win", "cash", "fast", "deal", "pro", "max", "secure", "mega", "top", "quick", "smart")
_TLDS = ("biz", "info", "ru", "top", "xyz", "click", "net")
_SPAM = (
    (
        "Dear {name},",
        "Congratulations! Your e-mail address has won {amount} in the {org} International Lottery.",
        "To claim your prize, send your full name, address and phone number to {email} before {date}.",
        "Your ticket number is {code}. Keep this winning notice confidential.",
        "Yours faithfully, {title} {name2}, Claims Department.",
    ),
    (
        "Hello friend,",
        "I am {title} {name2}, the son of a late minister. I need your help to transfer {amount} out of my "
        "country.",
        "You will receive {pct}% of the total sum for your assistance.",
        "Reply to {email} with your bank details and telephone {phone}.",
        "God bless you.",
    ),
    (
        "Buy {product} online at the lowest prices!!!",
        "Save up to {pct}% today only. No prescription needed, discreet shipping worldwide.",
        "Order now at {url} and get a free bonus pack.",
        "Limited offer, expires {date}. Call {phone}.",
        "To unsubscribe click here.",
    ),
    (
        "URGENT: your {org} account has been suspended.",
        "We detected unusual sign-in activity from IP {ip} on {date}.",
        "Verify your identity within 24 hours at {url} or your account will be closed.",
        "Reference number: {code}.",
        "{org} Security Team",
    ),
    (
        "Make {amount} a week from home!",
        "{name} from {city} quit her job after just {n} days using this simple system.",
        "Join {n2} members who already earn with {product}. No experience required, 100% guaranteed.",
        "Sign up free at {url}.",
        "Act now, only {n} spots left!!!",
    ),
    (
        "Pre-approved loan offer for {name}.",
        "You qualify for up to {amount} at only {pct}% APR, even with bad credit.",
        "Get cash in your account within {n} hours. Apply at {url}.",
        "Questions? Contact {email} or call {phone}.",
        "Offer code {code}. Terms and conditions apply.",
    ),
)
_NAV = ("Home", "About us", "Contact", "Blog", "Shop", "Login", "Register", "FAQ", "Careers", "Press", "Help")
_BOILER = (
    "This website uses cookies to improve your experience. By continuing to browse {site} you agree to our "
    "use of cookies. Learn more. Accept all.",
    "Subscribe to our newsletter for the latest updates. Enter your e-mail address. Subscribe.",
    "© {year} {site}. All rights reserved. Privacy Policy | Terms of Use | Cookie settings | Sitemap",
    "Share this article: Facebook Twitter LinkedIn WhatsApp Email. Print this page.",
    "Page not found. The page you are looking for on {site} may have been removed, had its name changed or "
    "is temporarily unavailable. Return to the home page.",
    "You are not logged in. Please sign in or create an account to continue. Forgot your password?",
    "Related posts: {title1} | {title2} | {title3}. Read more. Sponsored content.",
    "Posted by admin on {date} in Uncategorized. {n} comments. Leave a reply. Your email address will not "
    "be published. Required fields are marked *",
    "Skip to main content. Menu: {nav}. Search this site.",
    "Loading... Please enable JavaScript to view this page. Your browser is out of date.",
)
_STUFF = (
    "best {k1} online",
    "cheap {k2} {k1}",
    "buy {k1} now",
    "{k1} {k2} {k3}",
    "top 10 {k2}",
    "free {k3} download",
    "{k1} near me",
    "{k2} deals",
    "{k1} {k1} {k1}",
    "click here for {k3}",
)
_STOP_WORDS = (
    "a an and are as at be been but by for from had has have he her his in is it its of on or that "
    "the their they this to was were which with who also other into than then there these this those "
    "not can one two may more most such after over under between during about known first used them "
    "will said would could should what when where your just like only some very much many time year "
    "years new"
)
_STOP = frozenset(_STOP_WORDS.split())


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _check_n(n: int, caller: str) -> None:
    check_interval("n", n, 0, None, caller=caller)


def _domain(rng: np.random.Generator) -> str:
    return f"{_pick(rng, _SYLL)}{_pick(rng, _SYLL)}{int(rng.integers(10, 99))}.{_pick(rng, _TLDS)}"


def spam_emails(n: int, *, seed: int = 0) -> list[str]:
    """`n` spam-like e-mails: six templates (lottery, advance fee, pharmacy, phishing...), random fields."""
    _check_n(n, "spam_emails")
    rng = _rng(seed)
    out: list[str] = []
    for _ in range(n):
        lines = _SPAM[int(rng.integers(len(_SPAM)))]
        dom = _domain(rng)
        fields = {
            "name": f"{_pick(rng, _FIRST)} {_pick(rng, _LAST)}",
            "name2": f"{_pick(rng, _FIRST)} {_pick(rng, _LAST)}",
            "title": _pick(rng, _TITLES),
            "amount": f"${int(rng.integers(1, 999)) * 1000:,}",
            "pct": str(int(rng.integers(5, 95))),
            "org": _pick(rng, ("PayPal", "Microsoft", "Bank of America", "Euro Millions", "Amazon", "Apple")),
            "email": f"{_pick(rng, _FIRST).lower()}.{int(rng.integers(100, 999))}@{dom}",
            "url": f"http://www.{dom}/{rng.integers(1 << 30):x}",
            "date": f"{int(rng.integers(1, 28))}/{int(rng.integers(1, 12))}/20{int(rng.integers(10, 30))}",
            "code": f"{_pick(rng, ('XK', 'ZP', 'QA', 'LT'))}-{int(rng.integers(10**5, 10**6))}",
            "phone": f"+{int(rng.integers(1, 99))} {int(rng.integers(100, 999))} "
            f"{int(rng.integers(10**6, 10**7))}",
            "ip": ".".join(str(int(x)) for x in rng.integers(1, 255, size=4)),
            "product": _pick(rng, _PRODUCTS),
            "city": _pick(rng, ("Lagos", "Miami", "Leeds", "Manila", "Austin", "Kyiv")),
            "n": str(int(rng.integers(2, 30))),
            "n2": f"{int(rng.integers(1000, 90000)):,}",
        }
        keep = [line for i, line in enumerate(lines) if i == 0 or rng.random() < 0.85]
        out.append(" ".join(line.format(**fields) for line in keep))
    return out


def boilerplate(n: int, *, seed: int = 0) -> list[str]:
    """`n` web boilerplate pages: 2-5 fragments (cookie notices, footers, menus, share bar), random fields."""
    _check_n(n, "boilerplate")
    rng = _rng(seed)
    out: list[str] = []
    for _ in range(n):
        k = int(rng.integers(2, 6))
        parts = []
        for j in rng.choice(len(_BOILER), size=k, replace=False):
            nav = " | ".join(str(x) for x in rng.choice(_NAV, size=int(rng.integers(4, 9)), replace=False))
            titles = [
                f"{int(rng.integers(3, 15))} {_pick(rng, _SYLL)} tips you need to know" for _ in range(3)
            ]
            parts.append(
                _BOILER[int(j)].format(
                    site=_domain(rng),
                    year=int(rng.integers(2005, 2026)),
                    date=f"{_pick(rng, ('March', 'June', 'October'))} {int(rng.integers(1, 28))}, 2019",
                    n=int(rng.integers(0, 50)),
                    nav=nav,
                    title1=titles[0],
                    title2=titles[1],
                    title3=titles[2],
                )
            )
        out.append(" ".join(parts))
    return out


def shuffled_words(texts: Sequence[str], *, seed: int = 0) -> list[str]:
    """Each text with its whitespace-separated words in a random order (same bag of words, no syntax)."""
    rng = _rng(seed)
    return [" ".join(rng.permutation(t.split()).tolist()) for t in texts]


def near_copies(texts: Sequence[str], *, edit_rate: float = 0.05, seed: int = 0) -> list[str]:
    """Each text with about `edit_rate` of its words dropped or doubled: near duplicates."""
    check_interval("edit_rate", edit_rate, 0, 1, caller="near_copies")
    rng = _rng(seed)
    out = []
    for text in texts:
        words: list[str] = []
        for w in text.split():
            u = rng.random()
            if u < edit_rate / 2:
                continue
            words.append(w)
            if u > 1 - edit_rate / 2:
                words.append(w)
        out.append(" ".join(words))
    return out


def topic_keywords(texts: Sequence[str], *, k: int = 50) -> list[str]:
    """The `k` most frequent lowercase words (>= 4 letters, no stop words) of `texts`, ties by word."""
    counts = Counter(w for t in texts for w in re.findall(r"[a-z]{4,}", t.lower()) if w not in _STOP)
    return [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:k]]


def keyword_stuffing(n: int, keywords: Sequence[str], *, seed: int = 0) -> list[str]:
    """`n` SEO-spam texts: 8-25 phrases like 'best {keyword} online' over the given topic keywords."""
    _check_n(n, "keyword_stuffing")
    if n and not keywords:
        raise InputError("keyword_stuffing keywords must hold at least one word; got none.")
    rng = _rng(seed)
    out = []
    for _ in range(n):
        picks = [_pick(rng, keywords) for _ in range(3)]
        phrases = [
            _pick(rng, _STUFF).format(k1=_pick(rng, picks), k2=_pick(rng, picks), k3=_pick(rng, keywords))
            for _ in range(int(rng.integers(8, 26)))
        ]
        out.append(", ".join(phrases) + ".")
    return out


def off_language(n: int, *, lang: Literal["fr", "es"] = "fr", seed: int = 0) -> list[str]:
    """`n` real Wikipedia summaries in French or Spanish (off-language for an English target)."""
    _check_n(n, "off_language")
    check_option("lang", lang, ("fr", "es"), caller="off_language")
    return corpora.wiki(n, lang=lang, seed=seed)["text"].to_list()


@dataclass(frozen=True, slots=True)
class JunkCase:
    """A planted-junk case: `pool` (id, text, kind, is_junk; kind 'on_topic' or a JunkKind) and a disjoint
    on-topic `target` (id, text)."""

    name: str
    pool: pl.DataFrame
    target: pl.DataFrame

    @property
    def is_junk(self) -> np.ndarray:
        """Boolean mask over pool rows: True for planted junk."""
        return self.pool["is_junk"].to_numpy()


def plant_junk(
    name: str,
    on_topic: Sequence[str],
    target: Sequence[str],
    junk: Mapping[str, Sequence[str]],
    *,
    seed: int = 0,
) -> JunkCase:
    """A JunkCase of on-topic pool rows, a target sample and junk texts by kind; pool rows in seeded order."""
    if not target:
        raise InputError(f"plant_junk target of case '{name}' must hold at least one text; got none.")
    texts = list(on_topic) + [t for kind in junk for t in junk[kind]]
    kinds = ["on_topic"] * len(on_topic) + [kind for kind in junk for _ in junk[kind]]
    order = _rng(seed).permutation(len(texts))
    pool = pl.DataFrame(
        {
            "id": [f"{name}:{i}" for i in range(len(texts))],
            "text": [texts[i] for i in order],
            "kind": [kinds[i] for i in order],
        }
    ).with_columns(is_junk=pl.col("kind") != "on_topic")
    tgt = pl.DataFrame({"id": [f"{name}:target:{i}" for i in range(len(target))], "text": list(target)})
    return JunkCase(name=name, pool=pool, target=tgt)


def _split(df: pl.DataFrame, sizes: Sequence[int], seed: int) -> list[list[str]]:
    """Disjoint seeded samples of `df`'s texts of the given sizes."""
    if sum(sizes) > df.height:
        raise InputError(f"a case needs {sum(sizes)} on-topic texts; the corpus has {df.height}.")
    idx = _rng(seed).permutation(df.height)
    texts = df["text"].to_list()
    out, start = [], 0
    for s in sizes:
        out.append([texts[int(i)] for i in idx[start : start + s]])
        start += s
    return out


def _domain_frames(name: CaseName, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(on-topic corpus, other-domain corpus) of a named case."""
    wiki = corpora.wiki(labelled_only=True, seed=seed)
    if name == "wiki_science":
        on = wiki.filter(pl.col("label") == "Physical sciences")
        return on, wiki.filter(pl.col("label") != "Physical sciences")
    if name == "wiki_arts":
        on = wiki.filter(pl.col("label") == "Arts")
        return on, wiki.filter(pl.col("label") != "Arts")
    other = pl.concat([wiki.select("id", "text"), corpora.bbc_news().select("id", "text")])
    if name == "bbc":
        return corpora.bbc_news(), pl.concat(
            [wiki.select("id", "text"), corpora.sotu_paragraphs(3000).select("id", "text")]
        )
    return corpora.sotu_paragraphs(), other


def junk_case(
    name: CaseName,
    *,
    n_on_topic: int = 400,
    n_junk: int = 180,
    n_target: int = 200,
    kinds: Sequence[JunkKind] = DEFAULT_JUNK,
    seed: int = 0,
) -> JunkCase:
    """A planted-junk case on a real corpus: on-topic pool rows, `n_junk` junk rows split evenly over `kinds`,
    and a held-out on-topic target; shuffled and near-copied rows come from on-topic texts outside both."""
    check_option("name", name, CASES, caller="junk_case")
    for kind in kinds:
        check_option("kinds", kind, JUNK_KINDS, caller="junk_case")
    check_interval("n_on_topic", n_on_topic, 1, None, caller="junk_case")
    check_interval("n_junk", n_junk, 0, None, caller="junk_case")
    check_interval("n_target", n_target, 1, None, caller="junk_case")
    seeds = [int(s) for s in np.random.SeedSequence([seed, CASES.index(name)]).generate_state(8)]
    on, other = _domain_frames(name, seeds[0])
    per = [n_junk // len(kinds) + (i < n_junk % len(kinds)) for i in range(len(kinds))] if kinds else []
    need = dict(zip(kinds, per, strict=True))
    n_source = need.get("shuffled", 0) + need.get("near_copy", 0)
    pool_on, target, source = _split(on, [n_on_topic, n_target, n_source], seeds[1])
    junk: dict[str, list[str]] = {}
    for kind, k in need.items():
        if kind == "spam":
            junk[kind] = spam_emails(k, seed=seeds[2])
        elif kind == "boilerplate":
            junk[kind] = boilerplate(k, seed=seeds[3])
        elif kind == "shuffled":
            junk[kind] = shuffled_words(source[:k], seed=seeds[4])
        elif kind == "near_copy":
            junk[kind] = near_copies(source[len(source) - k :], seed=seeds[4])
        elif kind == "stuffing":
            junk[kind] = keyword_stuffing(k, topic_keywords(pool_on), seed=seeds[5])
        elif kind == "off_language":
            junk[kind] = off_language(k, lang="fr", seed=seeds[6])
        else:
            junk[kind] = _split(other, [k], seeds[7])[0]
    return plant_junk(name, pool_on, target, junk, seed=seeds[1])
