"""What dltool reads about the machine and its own process."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.subprocess
def test_process_age_counts_from_the_interpreter_s_start_not_from_dltool_s_import():
    code = "import time; time.sleep(0.3); from dltool.system_info import process_age; print(process_age())"
    age = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert 0.3 <= age < 30
