"""Runs examples/gradcam_nested_model.py at a tiny size on real MNIST digits.

Training a MobileNet is the slow part and is not what is tested here, so the test skips it
(`--epochs 0`); everything after training (two-stage Grad-CAM on the nested base, the overlays,
the grid, the curves) runs as in the full example.
"""

import importlib.util
import os

EXAMPLE = os.path.join(
    os.path.dirname(__file__), os.pardir, os.pardir, "examples", "gradcam_nested_model.py"
)


def test_gradcam_nested_example(tmp_path):
    spec = importlib.util.spec_from_file_location("gradcam_nested_model", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    args = ["--out", str(tmp_path), "--size", "32", "--epochs", "0", "--train-size", "64"]
    result = module.main([*args, "--explain", "2", "--layer", "base/conv_pw_5_relu"])
    assert set(result["maps"]) == {"grad_cam", "grad_cam_plus_plus", "guided_grad_cam"}
    assert all(m.shape == (2, 28, 28) for m in result["maps"].values())
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == ["digit_0_grad_cam.png", "digit_1_grad_cam.png", "grid.png"]
    assert result["curves"]["grad_cam"]["deletion"].shape == (2, 11)
