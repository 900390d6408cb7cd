import numpy as np
import pytest
from distill_helpers import compiled, student_net

from keras_cnn_ext.distillation import AttentionTransfer, Distillation

quantization = pytest.importorskip("keras_cnn_ext.quantization")


def test_distil_into_a_quantization_aware_student(teacher, mnist):
    x, y = mnist[0][:128], mnist[1][:128]
    qat = compiled(quantization.quantize_model(student_net()))
    ranges = quantization.quantizers_of(qat)
    assert ranges, "quantize_model added no FakeQuant layers"
    before = [[w.copy() for w in fq.get_weights()] for fq in ranges]
    kd = Distillation(teacher, alpha=0.3, feature_losses=[AttentionTransfer("t_conv2", "s_conv2")])
    kd.attach(qat)
    history = qat.fit(kd.cache(x, y).dataset(32, seed=0), epochs=2, verbose=0).history
    for key in ("loss", "distillation_loss", "attention_transfer_loss"):
        assert np.all(np.isfinite(history[key])), key
    assert history["loss"][1] < history["loss"][0]
    moved = [
        not all(np.array_equal(a, b) for a, b in zip(old, fq.get_weights(), strict=True))
        for old, fq in zip(before, ranges, strict=True)
    ]
    assert any(moved), "distillation did not update the activation ranges"
