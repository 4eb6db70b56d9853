"""README's bold numbers come from the result files their section cites (issue #28): every cited
``bench/results/...`` file exists, and every **number** in a section that cites result files matches
(at the README's precision) a number in one of them. A section with bold numbers must cite one."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CITED = re.compile(r"bench/results/[\w./-]+\.(?:md|json)")
BOLD_NUMBER = re.compile(r"\*\*([-+]?\d[\d,]*(?:\.\d+)?)")
NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")


def sections(text: str) -> list[str]:
    return re.split(r"\n(?=#{2,3} )", text)


def matches(readme_number: str, numbers: set[float], decimals_of: int) -> bool:
    """True when some number rounds to ``readme_number`` at its precision (12.99 matches 13.0)."""
    want = float(readme_number.replace(",", ""))
    tol = 0.5 * 10 ** -decimals_of + 1e-9
    return any(abs(n - want) <= tol for n in numbers)


def problems(text: str, root: Path = ROOT) -> list[str]:
    out = []
    for sec in sections(text):
        title = sec.splitlines()[0][:60]
        files = sorted(set(CITED.findall(sec)))
        out += [f"{title}: cites {f}, which does not exist" for f in files if not (root / f).is_file()]
        bold = BOLD_NUMBER.findall(sec)
        if not bold:
            continue
        if not files:
            out.append(f"{title}: bold numbers {bold[:5]} but no result file cited")
            continue
        numbers = {float(x) for f in files if (root / f).is_file()
                   for x in NUMBER.findall((root / f).read_text().replace(",", ""))}
        for b in bold:
            decimals = len(b.split(".")[1]) if "." in b else 0
            if not matches(b, numbers, decimals):
                out.append(f"{title}: **{b}** is in none of {files}")
    return out


def test_readme_numbers_come_from_cited_result_files():
    assert problems((ROOT / "README.md").read_text()) == []


def test_the_check_catches_a_hand_typed_number(tmp_path):
    (tmp_path / "bench/results/x").mkdir(parents=True)
    (tmp_path / "bench/results/x/r.md").write_text("| score | 12.99 |\n")
    ok = "## A\nscore **13.0** (`bench/results/x/r.md`)\n"
    assert problems(ok, tmp_path) == []
    assert problems(ok.replace("13.0", "13.4"), tmp_path) == ["## A: **13.4** is in none of ['bench/results/x/r.md']"]
    assert "no result file cited" in problems("## B\nscore **7.5**\n", tmp_path)[0]
    assert "does not exist" in problems("## C\n`bench/results/x/missing.md`\n", tmp_path)[0]
