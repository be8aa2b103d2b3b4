"""The README's result numbers come from the executed notebooks, the benchmark JSONs or the paper
(scripts/verdicts.py): a number typed by hand there goes stale with the next batch."""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import benchmark_tables  # noqa: E402
import verdicts as V  # noqa: E402

sys.path.pop(0)
CHECKED_SECTIONS = ("## Two commands", "## Interactive RID explorer", "## Which allocation", "## Results", "## Fine-tuning after pruning", "## Supported architectures",
                    "## Compression with DLP budgets", "## What pruning buys and costs", "## Notebooks",
                    "## Paper scale on a GPU", "## Tests", "## Status")
# Numbers in checked sections that are not results, so nothing generates them: (section, number, why).
# Keep this short; a configuration fact can also sit in a code span (`16 x 512`, `torch==2.13.0`).
ALLOWED = (("## Notebooks", "3.3", "the paper's section number (Sections 3.3-3.4)"),
           ("## Notebooks", "3.4", "the paper's section number (Sections 3.3-3.4)"))


def _allowed(section, number):
    return any(section.startswith(s) and number == n for s, n, _ in ALLOWED)


def _unsourced(text):
    src = V.source_numbers(ROOT / "results" / "notebooks" / "default")
    return [(s, n) for s, n in V.unsourced_numbers(text, src) if s.startswith(CHECKED_SECTIONS) and not _allowed(s, n)]


def test_every_result_number_has_a_generated_source():
    assert _unsourced((ROOT / "README.md").read_text()) == []


def test_a_planted_stale_number_fails():
    readme = (ROOT / "README.md").read_text()
    stale = readme.replace("## Results\n", "## Results\n\nDense perplexity 42.4917 on Brown.\n", 1)
    assert ("## Results", "42.4917") in _unsourced(stale)


@pytest.mark.parametrize("section, stale", [
    ("## Two commands\n", "The whole default batch takes about 53.8 minutes on 2 cores."),
    ("## Notebooks (one per study, table or appendix)\n", "The cold batch took 98.7 min."),
    ("## Paper scale on a GPU\n", "Restoring through a memory map peaked at +414.5 MiB."),
    ("## Tests\n", "About 14 minutes, ~530 tests."),
    ("## Status\n", "- One cold batch (53.8 min on 2 cores)."),
])
def test_a_planted_stale_number_in_a_newly_checked_section_fails(section, stale):
    readme = (ROOT / "README.md").read_text()
    assert readme.count(section) == 1
    planted = readme.replace(section, f"{section}\n{stale}\n", 1)
    number = V.readme_numbers(f"{section}{stale}\n")[-1][1]
    assert (section.strip(), number) in _unsourced(planted)


def test_a_number_the_benchmark_tables_write_counts_as_sourced():
    # 26.1 s is the CPU floor as the cost table rounds it; the JSON itself only holds 26.0595...
    text = "## Status\n- The CPU floor is 26.1 s.\n"
    assert "26.1" in benchmark_tables.blocks()["bench-cpu-cost"]
    assert _unsourced(text) == []
    assert _unsourced(text.replace("26.1", "26.7")) == [("## Status", "26.7")]


def test_the_allow_list_is_small_and_covers_only_its_section():
    assert len(ALLOWED) <= 4
    assert _unsourced("## Notebooks\nSections 3.3-3.4\n") == []
    assert ("## Status", "3.3") in _unsourced("## Status\n- Sections 3.3-3.4\n")


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


def test_every_notebook_has_a_row_in_the_notebooks_table():
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Notebooks (one per study, table or appendix)", 1)[1].split("\n#", 1)[0]
    rows = {line.split("`")[1] for line in table.splitlines() if line.startswith("| `")}
    assert rows == {p.stem for p in (ROOT / "notebooks").glob("[0-9]*.ipynb")}
