import pytest
import torch

from raysynth.nets.classifiers import CLASSIFIERS, build_classifier


@pytest.mark.parametrize("name", CLASSIFIERS.names())
@pytest.mark.parametrize("channels,size", [(1, 8), (1, 28), (3, 32)])
def test_classifier_maps_images_to_logits(name, channels, size):
    model = build_classifier(name, channels=channels, num_classes=7, image_size=size, width=8)
    assert model(torch.randn(2, channels, size, size)).shape == (2, 7)


@pytest.mark.parametrize("name", CLASSIFIERS.names())
def test_embedding_has_the_declared_size(name):
    model = build_classifier(name, channels=1, num_classes=10, image_size=28, width=8)
    assert model.embed(torch.randn(3, 1, 28, 28)).shape == (3, model.feature_dim)


def test_unknown_classifier_suggests_the_nearest():
    with pytest.raises(Exception, match="did you mean `convnet`"):
        build_classifier("convnt", channels=1, num_classes=10, image_size=8)
