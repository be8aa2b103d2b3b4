"""The README's result numbers come from the executed notebooks, the benchmark JSONs or the paper
(scripts/verdicts.py): a number typed by hand there goes stale with the next batch."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import verdicts as V  # noqa: E402

sys.path.pop(0)
CHECKED_SECTIONS = ("## Results", "## Fine-tuning after pruning", "## Supported architectures",
                    "## Compression with DLP budgets", "## What pruning buys and costs")


def _unsourced(text):
    src = V.source_numbers(ROOT / "results" / "notebooks" / "default")
    return [(s, n) for s, n in V.unsourced_numbers(text, src) if s.startswith(CHECKED_SECTIONS)]


def test_every_result_number_has_a_generated_source():
    assert _unsourced((ROOT / "README.md").read_text()) == []


def test_a_planted_stale_number_fails():
    readme = (ROOT / "README.md").read_text()
    stale = readme.replace("## Results\n", "## Results\n\nDense perplexity 42.4917 on Brown.\n", 1)
    assert ("## Results", "42.4917") in _unsourced(stale)


def test_allowed_places_are_not_checked():
    text = ("## Results\n```bash\nrun 123.456\n```\n`torch==2.13.0` [fig](figures/x/1234.5.png)\n"
            "<!-- verdicts:begin -->\n| 987.654 |\n<!-- verdicts:end -->\n### 31.5 heading\n")
    assert V.readme_numbers(text) == []
    assert V.readme_numbers("## Results\nppl 998.53 and 12 of 3000 runs\n") == [("## Results", "998.53"),
                                                                                ("## Results", "3000")]


def test_readme_headlines_are_short_and_figures_embedded():
    readme = (ROOT / "README.md").read_text()
    table = readme.split(V.BEGIN, 1)[1].split(V.END, 1)[0]
    cells = [line.split(" | ")[2] for line in table.splitlines() if line.startswith("| [")]
    assert cells and all(len(c) <= 200 for c in cells)
    assert readme.count("![") >= 5
    assert "../shared/" not in readme
