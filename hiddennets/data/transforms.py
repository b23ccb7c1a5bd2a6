"""The seeds' augmentations and normalisations."""
from __future__ import annotations

from torchvision import transforms as T

CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
CIFAR100_STATS = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
MNIST_STATS = ((0.1307,), (0.3081,))
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def small_image(stats, size: int, augment: bool) -> tuple[T.Compose, T.Compose]:
    """CIFAR-style: random crop with 4-pixel padding + horizontal flip (train), normalise."""
    tail = [T.ToTensor(), T.Normalize(*stats)]
    train = [T.RandomCrop(size, padding=4), T.RandomHorizontalFlip()] if augment else []
    return T.Compose(train + tail), T.Compose(tail)


def plain(stats) -> T.Compose:
    return T.Compose([T.ToTensor(), T.Normalize(*stats)])


def imagenet(augment: bool) -> tuple[T.Compose, T.Compose]:
    """RandomResizedCrop 224 + flip (train); resize 256, centre crop 224 (eval)."""
    tail = [T.ToTensor(), T.Normalize(*IMAGENET_STATS)]
    evaluation = T.Compose([T.Resize(256), T.CenterCrop(224)] + tail)
    if not augment:
        return evaluation, evaluation
    return T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip()] + tail), evaluation
