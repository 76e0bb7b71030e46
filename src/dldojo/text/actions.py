"""What a finished translation run can do from Python (`dldojo.load(run_dir).translate("I am a student.")`):
the `dldojo translate` command as a function of the loaded run (declared in this family's `FAMILY.actions`)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from dldojo.engine.errors import DojoError
from dldojo.engine.reload import LoadedRun


def translate(run: LoadedRun, sentence: str | Sequence[str], beam: int | None = None,
              length_penalty: float | None = None) -> str | list[str]:
    """Translate one sentence (or a list of them) with the run's model, tokenized like the training data,
    with beam search (`beam`: width, default the run's beam_width; 1 = greedy) and the GNMT length penalty
    (default the run's). Words outside the vocabulary are read as <unk> and listed on stderr."""
    from dldojo.text.cli import translate_line, translator_of

    if beam is not None and (isinstance(beam, bool) or not isinstance(beam, int) or beam < 1):
        raise DojoError(f"beam must be an integer >= 1, got {beam!r}.")
    translator = translator_of(run)
    beam = beam if beam is not None else translator.beam_width
    alpha = float(length_penalty) if length_penalty is not None else translator.length_penalty
    lines = [sentence] if isinstance(sentence, str) else list(sentence)
    if not all(isinstance(line, str) for line in lines):
        raise DojoError("translate takes a sentence (str) or a list of sentences.")
    out = []
    for line in lines:
        text, unknown = translate_line(translator, line, beam, alpha)
        if unknown:
            print(f"[unknown words, read as <unk>: {' '.join(unknown)}]", file=sys.stderr)
        out.append(text)
    return out[0] if isinstance(sentence, str) else out
