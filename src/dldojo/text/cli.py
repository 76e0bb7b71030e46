"""`dldojo translate RUN_DIR "sentence"` (or one sentence per stdin line) with a trained translation run.

Input is tokenized like the training data: English is lowercased and split off punctuation and
apostrophes ("I can't swim." -> "i can 't swim ."); Japanese may be given segmented (spaces between
words, as KyTea does) or unsegmented, in which case it is cut greedily into the longest words of the
source vocabulary. Unknown words become <unk> (and are listed on stderr).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from dldojo.engine.errors import DojoError

if TYPE_CHECKING:  # the command imports torch only when it runs
    from torch import nn

    from dldojo.data.enja import Vocab


def tokenize(text: str, language: str, vocab_stoi: dict[str, int] | None = None) -> list[str]:
    text = text.strip()
    if language == "en":
        text = text.lower()
        text = re.sub(r"([.,!?;:\"()])", r" \1 ", text)
        text = re.sub(r"(\w)'(\w)", r"\1 '\2", text)  # can't -> can 't, i'm -> i 'm (as in the corpus)
        return text.split()
    if any(ch.isspace() for ch in text) or vocab_stoi is None:
        return text.split()
    return longest_match(text, vocab_stoi)


def longest_match(text: str, vocab_stoi: dict[str, int], max_word: int = 8) -> list[str]:
    """Greedy left-to-right segmentation into the longest vocabulary words (single characters otherwise)."""
    tokens, i = [], 0
    while i < len(text):
        for j in range(min(len(text), i + max_word), i, -1):
            if text[i:j] in vocab_stoi or j == i + 1:
                tokens.append(text[i:j])
                i = j
                break
    return tokens


@dataclasses.dataclass
class Translator:
    """A trained translation model with its vocabularies and the run's decoding settings."""

    model: nn.Module
    src_vocab: Vocab
    tgt_vocab: Vocab
    direction: str
    """'en-ja' or 'ja-en'."""
    beam_width: int = 5
    length_penalty: float = 1.0
    max_src_len: int = 50
    """Longer inputs are refused with a message (training sentences have 4-16 tokens)."""


def load_translator(run_dir: Path) -> Translator:
    """The model of a finished seq2seq-gru / seq2seq-attn / transformer run, ready to translate."""
    from dldojo.engine.reload import load_run

    return translator_of(load_run(run_dir, family="text"))


def translator_of(run) -> Translator:
    """The translator of a loaded text-family run (`engine.reload.LoadedRun`)."""
    from dldojo.text.decoding import load_vocabs

    src_vocab, tgt_vocab, direction = load_vocabs(run)
    return Translator(run.model, src_vocab, tgt_vocab, direction, beam_width=run.config.beam_width,
                      length_penalty=run.config.length_penalty)


def translate_line(translator, line: str, beam_width: int, length_penalty: float) -> tuple[str, list[str]]:
    """(translation, unknown source words); raises DojoError for empty or too-long input."""
    from dldojo.text.decoding import translate_corpus

    src_lang, tgt_lang = translator.direction.split("-")
    tokens = tokenize(line, src_lang, translator.src_vocab.stoi)
    if not tokens:
        raise DojoError("empty input: nothing to translate (give a sentence).")
    if len(tokens) > translator.max_src_len:
        raise DojoError(f"input too long: {len(tokens)} tokens, this model takes at most {translator.max_src_len} "
                        f"(it was trained on sentences of 4-16 words); split the sentence.")
    unknown = [t for t in tokens if t not in translator.src_vocab.stoi]
    out = translate_corpus(translator.model, [translator.src_vocab.encode(tokens)], translator.tgt_vocab,
                           batch_size=1, beam_width=beam_width, length_penalty=length_penalty)[0]
    return ("".join(out) if tgt_lang == "ja" else " ".join(out)), unknown


def cmd_translate(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(1)
    translator = load_translator(Path(args.run_dir))
    beam = args.beam if args.beam is not None else translator.beam_width
    alpha = args.length_penalty if args.length_penalty is not None else translator.length_penalty
    if args.sentence is not None:
        text, unknown = translate_line(translator, args.sentence, beam, alpha)
        if unknown:
            print(f"[unknown words, read as <unk>: {' '.join(unknown)}]", file=sys.stderr)
        print(text)
        return 0
    status = 0
    for number, line in enumerate(sys.stdin, 1):
        try:
            text, unknown = translate_line(translator, line, beam, alpha)
        except DojoError as exc:  # keep one output line per input line
            print(f"line {number}: {exc}", file=sys.stderr)
            print("")
            status = 1
            continue
        if unknown:
            print(f"line {number}: [unknown words, read as <unk>: {' '.join(unknown)}]", file=sys.stderr)
        print(text, flush=True)
    return status


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("translate", help="translate a sentence (or stdin lines) with a trained translation run",
                       description="Translate with a finished seq2seq-gru / seq2seq-attn / transformer run. Without "
                                   "SENTENCE, reads one sentence per line from stdin and writes one line per input.")
    p.add_argument("run_dir")
    p.add_argument("sentence", nargs="?", help="the sentence; omit to read lines from stdin")
    p.add_argument("--beam", type=int, help="beam width (default: the run's beam_width; 1 = greedy)")
    p.add_argument("--length-penalty", type=float, help="GNMT length-penalty alpha (default: the run's)")
    p.set_defaults(func=cmd_translate)
