"""Rebuild character_baker/judges/data/wordnet_examples.txt.gz from a WordNet 3.0 database folder.

The coherence check learns what English word order looks like from these sentences as well as from the
pack's own replies, so that clean English in another register is not mistaken for salad.

    apt-get download wordnet-base && dpkg-deb -x wordnet-base_*.deb wn
    python tools/build_wordnet_examples.py wn/usr/share/wordnet
"""

from __future__ import annotations

import gzip
import re
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "character_baker" / "judges" / "data" / "wordnet_examples.txt.gz"


def examples(folder: Path) -> list[str]:
    """The quoted examples of every gloss ("he ran to the store"), four words or more, sentence-cased."""
    out: set[str] = set()
    for part in ("adj", "adv", "noun", "verb"):
        for line in (folder / f"data.{part}").read_text(encoding="latin-1").splitlines():
            if line.startswith("  ") or "| " not in line:
                continue  # the license header, or a synset without a gloss
            for quoted in re.findall(r'"([^"]+)"', line.split("| ", 1)[1]):
                text = " ".join(quoted.split())
                if "`" in text or "_" in text or len(text.split()) < 4:
                    continue  # quotations about words, multiword lemmas, bare phrases
                text = text[0].upper() + text[1:]
                out.add(text if text[-1] in ".!?" else text + ".")
    return sorted(out)


def main() -> None:
    rows = examples(Path(sys.argv[1]))
    with gzip.GzipFile(OUT, "wb", mtime=0) as f:
        f.write(("\n".join(rows) + "\n").encode())
    print(f"{len(rows)} sentences -> {OUT}")


if __name__ == "__main__":
    main()
