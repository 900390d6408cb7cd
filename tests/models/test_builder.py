"""Named variants of a family (`ResNet50`, `VGG16`, ...) and the builders' shared tail."""

import doctest
import inspect

import keras
import pytest

import keras_cnn_ext.models as models
from keras_cnn_ext.models import registry
from keras_cnn_ext.models.builder import finalize_model, finish_model, named_variant
from keras_cnn_ext.models.inputs import make_inputs

APPLICATION_ARGS = (
    "include_top",
    "weights",
    "input_tensor",
    "input_shape",
    "pooling",
    "classes",
    "classifier_activation",
    "name",
)


def _family(depth=1, *, version="a", include_top=True, classes=10, name=None):
    """A stand-in family builder: returns its arguments."""
    return dict(depth=depth, version=version, include_top=include_top, classes=classes, name=name)


@pytest.fixture
def variant():
    builder = named_variant(
        _family, "ToyNet7", "Toy net 7.", fixed={"depth": 7}, defaults={"classes": 3}
    )
    yield builder
    del registry._BUILDERS["toynet7"]


def test_named_variant_signature_and_call(variant):
    signature = inspect.signature(variant)
    assert list(signature.parameters) == ["version", "include_top", "classes", "name"]
    assert signature.parameters["classes"].default == 3
    assert variant() == dict(depth=7, version="a", include_top=True, classes=3, name=None)
    assert variant(classes=5, version="b")["classes"] == 5
    assert registry.get_builder("toy-net-7") is variant
    assert variant.__name__ == "ToyNet7" and variant.__module__ == _family.__module__
    with pytest.raises(TypeError, match=r"`ToyNet7` fixes \['depth'\]"):
        variant(depth=3)
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
        variant(colour="red")
    with pytest.raises(TypeError, match="has no arguments"):
        named_variant(_family, "ToyNet8", "Toy.", fixed={"width": 8})


def _public_builders():
    return {name: registry.get_builder(name) for name in registry.list_builders()}


@pytest.mark.parametrize("name", sorted(_public_builders()))
def test_every_builder_has_a_real_signature(name):
    # What the CLI, help() and IPython read: explicit keyword parameters, no **kwargs, and
    # every one with a default, so the registered name builds when called without arguments.
    builder = registry.get_builder(name)
    parameters = inspect.signature(builder).parameters
    kinds = {p.kind for p in parameters.values()}
    assert inspect.Parameter.VAR_KEYWORD not in kinds
    assert inspect.Parameter.VAR_POSITIONAL not in kinds
    assert all(p.default is not inspect.Parameter.empty for p in parameters.values())
    expected = [a for a in APPLICATION_ARGS if not (name == "unet" and a == "pooling")]
    assert set(expected) <= set(parameters), sorted(set(expected) - set(parameters))
    assert builder.__doc__ and "Args:" in builder.__doc__ and "Example:" in builder.__doc__
    assert getattr(models, builder.__name__) is builder  # importable from the package


def test_variant_defaults_and_fixed_arguments():
    assert inspect.signature(models.ResNet).parameters["depth"].default == 50
    se = inspect.signature(models.SEResNet50).parameters
    assert "attention" not in se and "version" not in se and se["use_bias"].default is False
    assert inspect.signature(models.DenseNetBC).parameters["depth"].default == 100
    with pytest.raises(TypeError, match="`ResNet50V2` fixes"):
        models.ResNet50V2(version="v1")


def test_variant_docstring_example_runs():
    # Every variant's example is this template with its own name and default channels
    # (tests/test_docstrings.py runs each template once); the CIFAR one is the cheapest.
    builder = models.ResNet20
    test = doctest.DocTestParser().get_doctest(
        builder.__doc__, {builder.__name__: builder}, builder.__name__, None, 0
    )
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test)
    assert runner.summarize(verbose=False).failed == 0


def test_finish_model_uses_the_source_inputs_of_an_input_tensor():
    source = keras.Input((12, 12, 3))
    scaled = keras.layers.Rescaling(2.0)(source)
    inputs = make_inputs(scaled)
    features = keras.layers.Conv2D(4, 3)(inputs)
    model = finish_model(inputs, features, name="m", include_top=True, classes=3)
    assert model.inputs[0] is source
    assert model.output_shape == (None, 3)
    plain = finalize_model(inputs, features, name="f")
    assert plain.output_shape == (None, 10, 10, 4)
