"""Word-level question tokenizer, built and saved with the `tokenizers` library."""

from tokenizers import Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import WordLevel

PAD, UNK, BOS, EOS = "[PAD]", "[UNK]", "[BOS]", "[EOS]"


def build_tokenizer(texts: list[str], specials: tuple[str, ...] = (PAD, UNK)) -> Tokenizer:
    """A lower-cased vocabulary of every word in `texts` (punctuation dropped), after `specials`
    ([PAD]=0, [UNK]=1, then e.g. [BOS], [EOS] for text generation)."""
    words = sorted({w for text in texts for w in words_of(_empty({}), text)})
    return _empty({**{t: i for i, t in enumerate(specials)}, **{w: i + len(specials) for i, w in enumerate(words)}})


def _empty(vocab: dict[str, int]) -> Tokenizer:
    tok = Tokenizer(WordLevel({PAD: 0, UNK: 1, **vocab}, unk_token=UNK))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(behavior="removed")]
    )
    return tok


def words_of(tok: Tokenizer, text: str) -> list[str]:
    """The words the tokenizer sees in `text`: normalised, punctuation removed."""
    return [w for w, _ in tok.pre_tokenizer.pre_tokenize_str(tok.normalizer.normalize_str(text))]


def unknown_words(tok: Tokenizer, text: str) -> list[str]:
    """Words of `text` that the vocabulary lacks, as they were typed."""
    enc, unk = tok.encode(text), tok.token_to_id(UNK)
    return [text[a:b] for i, (a, b) in zip(enc.ids, enc.offsets, strict=True) if i == unk]


def encode_batch(tok: Tokenizer, texts: list[str]) -> tuple[list[list[int]], list[int]]:
    """Right-padded id rows and the true lengths (at least 1: a text of punctuation alone reads as [UNK])."""
    ids = [e.ids or [tok.token_to_id(UNK)] for e in tok.encode_batch(texts)]
    width = max(len(r) for r in ids)
    return [r + [0] * (width - len(r)) for r in ids], [len(r) for r in ids]
