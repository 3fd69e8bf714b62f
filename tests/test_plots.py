"""Tests of ``convlstm_tl.evaluation.plots``."""

import warnings

from convlstm_tl.evaluation.plots import save_confusion_matrix


def test_non_latin_class_names_draw_without_glyph_warnings(tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        save_confusion_matrix([[1, 2], [3, 4]], ["日本", "中国"], tmp_path / "cm.png", title="日本 on 中国")
    assert (tmp_path / "cm.png").stat().st_size > 0
    assert not [w for w in caught if "Glyph" in str(w.message)]
