"""The seeds' augmentations and normalisations."""
from __future__ import annotations

from torchvision import transforms as T

CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
CIFAR100_STATS = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
MNIST_STATS = ((0.1307,), (0.3081,))
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
# Tiny-ImageNet's own, as the one seed that trains on it uses them (ksreenivasan/pruning_is_enough
# data/tinyimagenet.py, with RandomCrop(64, padding=4) + flip: the CIFAR augmentation, not a resized crop)
TINYIMAGENET_STATS = ((0.48024578664982126, 0.44807218089384643, 0.3975477478649648),
                      (0.2769864069088257, 0.26906448510256, 0.282081906210584))


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
