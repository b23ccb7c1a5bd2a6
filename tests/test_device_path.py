"""The device-resident data path (hiddennets.data.device_path): the same batches as a straightforward
per-image reference built from torchvision's own functional transforms, the same unaugmented batches
as the torchvision DataLoader, disjoint covering DDP shards over real gloo, and exact resume after kill -9."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torchvision.transforms.functional as TF
from PIL import Image

from hiddennets import config_from_dict, train
from hiddennets.data import build_datasets
from hiddennets.data.device_path import Unsupported, augmentation_of
from hiddennets.data.loaders import make_loaders, on_device
from hiddennets.data.transforms import CIFAR10_STATS
from hiddennets.distributed import DistInfo, dist_info
from hiddennets.errors import ConfigError
from hiddennets.loops import epoch_seed, seed_epoch
from tests.conftest import REPO
from tests.fixtures import write_cifar, write_imagefolder, write_mnist, write_tinyimagenet
from tests.test_training import _free_port, _metrics_without_time


def _cfg(root, **kw):
    return config_from_dict({"dataset": "cifar10", "data_dir": str(root), "arch": "conv2", "batch_size": 16,
                             "eval_batch_size": 32, "val_fraction": 0.2, **kw})


def _loaders(cfg, info=DistInfo()):
    datasets = build_datasets(cfg)
    return make_loaders(cfg, info, datasets, on_device(cfg, datasets), torch.device("cpu"))


def _epoch(loaders, cfg, epoch, info=DistInfo()):
    train_loader, sampler = loaders[0], loaders[1]
    seed_epoch(cfg, epoch, info, sampler, train_loader)
    return list(train_loader)


def _reference_epoch(cfg, epoch, info=DistInfo()):
    """Per image, with torchvision's functional ops on PIL images: pad 4 with zeros, crop at the drawn
    offsets, flip where drawn, to tensor, normalise; the rank's DistributedSampler order; batches of
    batch_size. The random draws: one generator per (seed, epoch, rank), offsets (n, 2) then flips (n,)."""
    train_ds = build_datasets(cfg)[0]
    base = train_ds.dataset  # the torchvision CIFAR10 under the Subset
    sampler = torch.utils.data.DistributedSampler(train_ds, num_replicas=info.world_size, rank=info.rank,
                                                  shuffle=True, seed=cfg.seed, drop_last=False)
    sampler.set_epoch(epoch)
    order = list(sampler)
    g = torch.Generator().manual_seed(epoch_seed(cfg, epoch, info.rank))
    offsets = torch.randint(0, 9, (len(order), 2), generator=g)
    flips = torch.rand(len(order), generator=g) < 0.5
    xs, ys = [], []
    for position, i in enumerate(order):
        item = train_ds.indices[i]
        img = TF.pad(Image.fromarray(base.data[item]), 4)
        img = TF.crop(img, int(offsets[position, 0]), int(offsets[position, 1]), 32, 32)
        if flips[position]:
            img = TF.hflip(img)
        xs.append(TF.normalize(TF.to_tensor(img), *CIFAR10_STATS))
        ys.append(base.targets[item])
    return [(torch.stack(xs[s:s + cfg.batch_size]), torch.tensor(ys[s:s + cfg.batch_size]))
            for s in range(0, len(order), cfg.batch_size)]


def _same_batches(a, b):
    assert len(a) == len(b)
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(ya, yb)
        assert torch.equal(xa, xb), (xa - xb).abs().max()


def test_device_batches_equal_a_per_image_reference_of_the_same_augmentation(tmp_path):
    write_cifar(tmp_path, n_per_batch=12)  # 60 training images, 48 after the 20% validation split
    cfg = _cfg(tmp_path, loader="device")
    loaders = _loaders(cfg)
    for epoch in (0, 1, 7):
        ours = _epoch(loaders, cfg, epoch)
        _same_batches(ours, _reference_epoch(cfg, epoch))
    assert [len(x) for x, _ in ours] == [16, 16, 16]
    # every epoch draws anew: other crops, flips and order
    assert not torch.equal(_epoch(loaders, cfg, 0)[0][0], _epoch(loaders, cfg, 1)[0][0])
    # and the same epoch again gives the same batches (what resume relies on)
    _same_batches(_epoch(loaders, cfg, 7), ours)


def test_unaugmented_device_batches_equal_the_torchvision_loaders_bit_for_bit(tmp_path):
    write_cifar(tmp_path, n_per_batch=12)
    for kw in ({"augment": False}, {"dataset": "mnist"}):
        if kw.get("dataset") == "mnist":
            write_mnist(tmp_path, n_train=50)
        device = _loaders(_cfg(tmp_path, loader="device", **kw))
        vision = _loaders(_cfg(tmp_path, loader="torchvision", **kw))
        cfg = _cfg(tmp_path, **kw)
        _same_batches(_epoch(device, cfg, 3), _epoch(vision, cfg, 3))
        for split in (2, 3):  # validation and test
            _same_batches(list(device[split]), list(vision[split]))


def test_tinyimagenet_folders_go_on_the_device_and_imagenet_stays_on_torchvision(tmp_path):
    tiny = write_tinyimagenet(tmp_path / "tiny")
    cfg = config_from_dict({"dataset": "tinyimagenet", "data_dir": str(tiny), "val_fraction": 0})
    datasets = build_datasets(cfg)
    tensors = on_device(cfg, datasets)
    assert tensors is not None and tensors[0].images.shape == (10, 3, 64, 64)
    assert tensors[0].augmentation.pad == 4 and tensors[0].augmentation.flip == 0.5
    # Gem-Miner's Tiny-ImageNet transform (ksreenivasan/pruning_is_enough data/tinyimagenet.py): its own stats
    assert tensors[0].augmentation.mean == pytest.approx((0.48024578664982126, 0.44807218089384643, 0.3975477478649648))
    assert tensors[0].augmentation.std == pytest.approx((0.2769864069088257, 0.26906448510256, 0.282081906210584))
    # the decoded pixels are the torchvision path's (the folder's own PIL loader)
    plain = Image.open(datasets[2].samples[1][0]).convert("RGB")
    assert torch.equal(tensors[2].images[1], TF.pil_to_tensor(plain))

    imagenet = write_imagefolder(tmp_path / "imagenet")
    cfg = config_from_dict({"dataset": "imagenet", "data_dir": str(imagenet), "arch": "resnet18"})
    assert on_device(cfg, build_datasets(cfg)) is None  # RandomResizedCrop: auto keeps torchvision
    with pytest.raises(ConfigError, match=r"^loader: device cannot hold dataset imagenet \(RandomResizedCrop\); use "
                                          r"loader: auto or torchvision$"):
        on_device(config_from_dict({"dataset": "imagenet", "data_dir": str(imagenet), "arch": "resnet18",
                                    "loader": "device"}), build_datasets(cfg))


def test_augmentations_the_device_path_cannot_reproduce_are_refused():
    from torchvision import transforms as T
    assert augmentation_of(T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                                      T.Normalize((0.5,), (0.25,))]), 32).random
    for bad in (T.RandomCrop(32, padding=4, padding_mode="reflect"), T.RandomCrop(28, padding=2),
                T.ColorJitter(0.1), T.Compose([T.Resize(36), T.ToTensor()])):
        with pytest.raises(Unsupported):
            augmentation_of(bad, 32)


def test_a_channels_last_batch_is_made_in_that_layout_with_the_same_values():
    # on CUDA the batch is written channels-last by its one float copy (no second copy to reorder it)
    from hiddennets.data.device_path import Augmentation, augment_batch, batch_memory_format
    assert batch_memory_format(torch.device("cuda")) == torch.channels_last
    assert batch_memory_format(torch.device("cpu")) == torch.contiguous_format
    images = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    aug = Augmentation(pad=2, flip=0.5, to_unit=True, mean=CIFAR10_STATS[0], std=CIFAR10_STATS[1])
    crops = (torch.tensor([0, 1, 2, 3, 4]), torch.tensor([4, 3, 2, 1, 0]), torch.tensor([True, False, True, False, True]))
    plain = augment_batch(images, aug, *crops)
    nhwc = augment_batch(images, aug, *crops, memory_format=torch.channels_last)
    assert plain.is_contiguous() and nhwc.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(plain, nhwc)


def _shard_worker(rank, world, port, root, results):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        cfg = _cfg(root, loader="device", augment=False, batch_size=7)
        info = dist_info()
        loaders = _loaders(cfg, info)
        seen = {}
        for split, batches in (("train", _epoch(loaders, cfg, 2, info)), ("test", list(loaders[3]))):
            seen[split] = [x.numpy().tobytes() for batch, _ in batches for x in batch]
        results[rank] = seen
        # and a whole run on the device path under DDP: all-reduced metrics, one writer
        results[f"run{rank}"] = train(_cfg(root, loader="device", epochs=2), os.path.join(root, "ddp"), log=None)
    finally:
        dist.destroy_process_group()


def test_ddp_two_gloo_workers_get_disjoint_device_shards_that_cover_the_data(tmp_path):
    write_cifar(tmp_path, n_per_batch=12, n_test=31)
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_shard_worker, args=(2, _free_port(), str(tmp_path), results), nprocs=2)
        results = dict(results)
    # what one process sees of the same data (torchvision's loaders): the union of the two shards
    cfg = _cfg(tmp_path, loader="torchvision", augment=False, batch_size=7)
    single = _loaders(cfg)
    everything = {"train": [x.numpy().tobytes() for batch, _ in _epoch(single, cfg, 2) for x in batch],
                  "test": [x.numpy().tobytes() for batch, _ in single[3] for x in batch]}
    for split in ("train", "test"):
        ours = [results[r][split] for r in (0, 1)]
        assert not set(ours[0]) & set(ours[1])  # disjoint
        assert sorted(ours[0] + ours[1]) == sorted(everything[split])  # and together exactly the data
    assert [len(results[r]["train"]) for r in (0, 1)] == [24, 24] and [len(results[r]["test"]) for r in (0, 1)] == [16, 15]
    untimed = [{k: v for k, v in results[f"run{r}"]["final"].items() if k != "seconds"} for r in (0, 1)]
    assert untimed[0] == untimed[1]
    assert [json.loads(line)["epoch"] for line in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()] == [1, 2]


def test_a_device_path_run_killed_mid_epoch_resumes_bit_identically(tmp_path):
    write_cifar(tmp_path / "data", n_per_batch=500)  # 2,500 images: an epoch of conv4 takes seconds here
    args = ["sweeps/quickstart.yaml", "dataset=cifar10", f"data_dir={tmp_path / 'data'}", "arch=conv4", "width=0.25",
            "epochs=3", "batch_size=64", "loader=device"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    straight = subprocess.run([sys.executable, "-m", "pipeline.run", *args, "--out", str(tmp_path / "straight")],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert straight.returncode == 0, straight.stderr
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.run", *args, "--out", str(out)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = out / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and not (metrics.exists() and metrics.read_text().strip()):
        time.sleep(0.05)
    time.sleep(0.3)  # inside epoch 2
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    done = len(metrics.read_text().splitlines())
    assert 1 <= done < 3, f"the kill landed after {done} epochs"
    resumed = subprocess.run([sys.executable, "-m", "pipeline.run", *args, "--out", str(out)], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert f"from epoch {done}" in resumed.stdout
    assert _metrics_without_time(out) == _metrics_without_time(tmp_path / "straight")


def test_torchvision_path_with_persistent_workers_gives_the_same_epoch_however_it_started(tmp_path):
    """Each item's crop is seeded from (seed, epoch, rank, position): a loader whose worker processes
    have lived through earlier epochs gives epoch 2 exactly as a fresh one (what a resume creates)."""
    write_cifar(tmp_path, n_per_batch=12)
    cfg = _cfg(tmp_path, loader="torchvision", num_workers=2)
    lived = _loaders(cfg)
    assert lived[0].persistent_workers
    for epoch in (0, 1):
        _epoch(lived, cfg, epoch)
    _same_batches(_epoch(lived, cfg, 2), _epoch(_loaders(cfg), cfg, 2))
    _same_batches(_epoch(_loaders(cfg), cfg, 2), _epoch(_loaders(_cfg(tmp_path, loader="torchvision")), cfg, 2))
