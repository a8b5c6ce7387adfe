"""``featbench describe``: every parameter of featbench's classifiers has a description,
and a description that introduces a list names the list's items rather than stopping
at its colon."""

from __future__ import annotations

import pytest

from featbench.cli import _param_docs


def test_a_description_ending_in_a_colon_names_its_items():
    doc = """Thing.

    Parameters
    ----------
    solver : {'a', 'b'}, default='a'
        Solver to use:

        - 'a' is quick.
        - 'b': slow but sure.
    mode : {'x', 'y'}
        Mode to run in:
    """
    import inspect

    docs = _param_docs(inspect.cleandoc(doc))
    assert docs["solver"] == "Solver to use: 'a', 'b'."
    assert docs["mode"] == "Mode to run in: {'x', 'y'}."


@pytest.mark.parametrize("name", ["linear-svm", "logreg", "knn", "own-head"])
def test_every_parameter_of_our_classifiers_is_described(name):
    from featbench.classifiers import CLASSIFIERS
    from featbench.registry import _import_target

    entry = CLASSIFIERS.get(name)
    docs = _param_docs(_import_target(entry.target))
    missing = [p for p in entry.spec().params if not docs.get(p)]
    assert not missing, f"{name}: no description for {missing}"


def test_report_cells_read_as_the_terminal_tables(tmp_path):
    """report.html shows "-" for a missing value and accuracies to 4 decimals (it
    showed None and 1)."""
    import pandas as pd

    from featbench.report import write_html

    df = pd.DataFrame({"row": ["HOG"], "test_acc": [1.0], "reference": [None],
                       "difference": [float("nan")], "feature_dim": [324.0],
                       "extract_s": [56490.2]})
    text = write_html(df, [], tmp_path / "r.html", "t").read_text()
    assert "<td>1.0000</td>" in text and "<td>324</td>" in text
    assert "<td>56490.2</td>" in text and "e+04" not in text
    from featbench.report import HTML_COLUMNS

    # every column the page shows but the rows lack (reference, difference, ...) is "-"
    assert "None" not in text
    assert text.count("<td>-</td>") == len(HTML_COLUMNS) - 4
