"""Word-level question tokenizer, built and saved with the `tokenizers` library."""

from tokenizers import Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import WordLevel

PAD, UNK = "[PAD]", "[UNK]"


def build_tokenizer(texts: list[str]) -> Tokenizer:
    """A lower-cased word vocabulary of every word in `texts`; [PAD]=0, [UNK]=1."""
    tok = _empty({PAD: 0, UNK: 1})
    words = sorted({w for text in texts for w, _ in tok.pre_tokenizer.pre_tokenize_str(tok.normalizer.normalize_str(text))})
    return _empty({PAD: 0, UNK: 1, **{w: i + 2 for i, w in enumerate(words)}})


def _empty(vocab: dict[str, int]) -> Tokenizer:
    tok = Tokenizer(WordLevel(vocab, unk_token=UNK))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Whitespace()  # words and punctuation apart
    return tok


def unknown_words(tok: Tokenizer, text: str) -> list[str]:
    """Words of `text` that the vocabulary lacks (punctuation is ignored)."""
    enc = tok.encode(text)
    return [w for w, i in zip(enc.tokens, enc.ids) if i == tok.token_to_id(UNK) and w.isalnum()]


def encode_batch(tok: Tokenizer, texts: list[str]) -> tuple[list[list[int]], list[int]]:
    """Right-padded id rows and the true lengths (at least 1, so an all-punctuation text still reads)."""
    ids = [[i for i, w in zip(e.ids, e.tokens) if w.isalnum() or i != tok.token_to_id(UNK)] for e in tok.encode_batch(texts)]
    ids = [row or [tok.token_to_id(UNK)] for row in ids]
    width = max(len(r) for r in ids)
    return [r + [0] * (width - len(r)) for r in ids], [len(r) for r in ids]
