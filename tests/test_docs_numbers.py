"""The docs' measured tables are what the commands print: the cheap commands are rerun here
and compared digit for digit with the generated blocks of the pages (scripts/regen_docs.py)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("regen_docs", ROOT / "scripts" / "regen_docs.py")
regen = importlib.util.module_from_spec(_spec)
sys.modules["regen_docs"] = regen          # its dataclass looks its module up there
_spec.loader.exec_module(regen)


def test_every_block_has_its_markers_in_its_page():
    for name in regen.BLOCKS:
        assert regen.page_block(name).strip(), name


def test_tables_are_read_cell_by_cell_from_the_dashes():
    out = "units n  P(x)  name\n-------  ----  ----\n      1  0.25  ab c\n     12     1  d\n\nnote"
    assert regen.parse_table(out) == [{"units n": "1", "P(x)": "0.25", "name": "ab c"},
                                      {"units n": "12", "P(x)": "1", "name": "d"}]


def _same_as_page(name: str) -> None:
    printed, page = regen.render(name), regen.page_block(name)
    assert printed == page, (f"{regen.BLOCKS[name].page} block {name!r} no longer matches "
                             f"`minidl {' '.join(regen.BLOCKS[name].argv)}`; run "
                             f"`python scripts/regen_docs.py {name}`.\nprinted:\n{printed}\n"
                             f"page:\n{page}")


@pytest.mark.parametrize("name", ["flow-neuron", "flow-parallel"])
def test_fast_flow_tables_match_the_commands(name):
    _same_as_page(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["flow-bn", "demo-quick"])
def test_bn_table_and_quick_demo_match_the_commands(name):
    _same_as_page(name)


def test_the_cheap_blocks_are_all_tested():
    assert set(regen.CHEAP) == {"flow-neuron", "flow-parallel", "flow-bn", "demo-quick"}
