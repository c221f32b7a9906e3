import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import grid_table  # noqa: E402


def record(hidden, tokens, ours, inductor, moved, fraction):
    return {"dtype": "bfloat16", "hidden": hidden, "tokens": tokens, "bytes": moved, "us": {"ours": ours},
            "speedup_vs_inductor": None if inductor is None else inductor / ours, "ours_fraction_of_copy": fraction}


def test_table_marks_the_copy_fraction_only_where_64_mib_move():
    records = [
        record(4096, 1, 1.12, 1.61, 16 * 2**10, 0.01),
        record(4096, 8192, 34.1, 39.2, 128 * 2**20, 0.934),
        record(8192, 1, 1.62, None, 32 * 2**10, 0.01),  # Inductor missing: no ratio
    ]
    assert grid_table.table(records) == (
        "| hidden | 1 | 8192 |\n"
        "|---|---|---|\n"
        "| 4096 | 1.12; 1.44× | 34.1; 1.15× (93%) |\n"
        "| 8192 | 1.62 | - |"
    )
