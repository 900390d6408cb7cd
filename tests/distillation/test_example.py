import importlib.util
import os

import numpy as np

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "distillation.py")


def test_example_runs_tiny_and_the_distilled_student_learns(tmp_path):
    spec = importlib.util.spec_from_file_location("distillation_example", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    path = str(tmp_path / "student.keras")
    arguments = "--teacher-images 800 --teacher-epochs 1 --labelled 256 --epochs 4"
    result = example.main([*arguments.split(), "--test-images", "300", "--output", path])
    assert os.path.exists(path) and result["path"] == path
    assert result["teacher_samples"] == 256  # the cache ran the teacher once per image
    history = result["history"]
    assert history["temperature"] == [8.0, 8.0, 4.0, 4.0]
    assert history["loss"][-1] < history["loss"][0]
    assert history["student_loss"][-1] < history["student_loss"][0]
    assert np.all(np.isfinite(history["attention_transfer_loss"]))
    assert result["accuracy"] > 0.3  # 10 classes: chance is 0.1
