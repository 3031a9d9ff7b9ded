"""The shared argument checks of neuralgraphs._checks: exact messages, since callers' tests match them."""

import math

import numpy as np
import pytest

from neuralgraphs._checks import (check_float, check_folder, check_int, check_optional_callable,
                                  check_probability, check_seed)


def test_check_int():
    assert check_int("n", np.int64(3), minimum=1) == 3 and type(check_int("n", np.int64(3))) is int
    assert check_int("n", -7) == -7
    with pytest.raises(TypeError, match=r"^n: expected an int, got float 2\.0$"):
        check_int("n", 2.0)
    with pytest.raises(TypeError, match=r"^n: expected an int, got bool True$"):
        check_int("n", True)
    with pytest.raises(ValueError, match=r"^n: expected an int >= 1, got 0$"):
        check_int("n", 0, minimum=1)
    with pytest.raises(ValueError, match=r"^seed: expected an int >= 0, got -1$"):
        check_seed("seed", -1)


def test_check_float():
    assert check_float("lr", np.float32(0.5), 0.0, open_low=True) == 0.5
    with pytest.raises(TypeError, match=r"^lr: expected a float, got str '1'$"):
        check_float("lr", "1")
    with pytest.raises(ValueError, match=r"^lr: expected a float in \(0\.0, inf\), got 0\.0$"):
        check_float("lr", 0.0, 0.0, open_low=True)
    with pytest.raises(ValueError, match=r"^momentum: expected a float in \[0\.0, 1\.0\], got 1\.5$"):
        check_float("momentum", 1.5, 0.0, 1.0)
    with pytest.raises(ValueError, match=r"^x: expected a float in \[0, 1\), got 1\.0$"):
        check_float("x", 1.0, 0, 1, open_high=True)
    with pytest.raises(ValueError, match=r"^w: expected a float in \[0\.0, inf\), got inf$"):
        check_float("w", math.inf, 0.0)
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match=r"^gamma: expected a finite float, got "):
            check_float("gamma", bad)


def test_check_probability():
    assert check_probability("p", 1) == 1.0
    with pytest.raises(TypeError, match=r"^p: expected a float probability in \[0, 1\], got NoneType None$"):
        check_probability("p", None)
    for bad in (-0.1, 1.5, math.nan):
        with pytest.raises(ValueError, match=r"^p: expected a probability in \[0, 1\], got "):
            check_probability("p", bad)


def test_check_folder_and_callable(tmp_path):
    assert check_folder("root", tmp_path) == str(tmp_path)
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(ValueError, match=r"^root: expected a folder, got the non-folder path"):
        check_folder("root", tmp_path / "f.txt")
    with pytest.raises(FileNotFoundError, match=r"^root: folder .* does not exist$"):
        check_folder("root", tmp_path / "missing")
    with pytest.raises(TypeError, match=r"^root: expected a str or os.PathLike folder path, got int$"):
        check_folder("root", 3)
    assert check_optional_callable("transform", None) is None and check_optional_callable("transform", abs) is abs
    with pytest.raises(TypeError, match=r"^transform: expected a callable or None, got int$"):
        check_optional_callable("transform", 3)
