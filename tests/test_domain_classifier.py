"""smoothgan.metrics.domain_classifier: it tells synthetic domains apart, refuses to judge below 98%, round-trips."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from smoothgan import images
from smoothgan.errors import DataError, InputError
from smoothgan.metrics import domain_classifier as dc
from smoothgan.trainer import synth

DOMAINS = ("circle", "square", "triangle")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth.generate(tmp_path_factory.mktemp("dc") / "shapes", num_per_domain=100, img_size=32, seed=2,
                          domains=DOMAINS, val_fraction=0.2)


@pytest.fixture(scope="module")
def trained(data: Path) -> dc.DomainClassifier:
    torch.set_num_threads(2)
    return dc.train_domain_classifier(data, DOMAINS, 32, epochs=15, batch_size=16, widths=(16, 32, 64), seed=0)


def test_it_tells_synthetic_domains_apart(trained: dc.DomainClassifier, data: Path) -> None:
    # 240 training images, 15 epochs: measured 0.98-1.0 on the 60 held-out images; chance is 0.33
    assert trained.val_accuracy >= 0.9 and trained.val_count == 60
    assert len(trained.history) == 15 and trained.val_accuracy == max(h["val_accuracy"] for h in trained.history)
    x, y = dc.load_split(data, "val", DOMAINS, 32)
    assert float((trained._logits(x).argmax(1) == y).mean()) == pytest.approx(trained.val_accuracy)
    files = [images.load(f) for f in images.list_images(data / "val")]
    probabilities = trained.probabilities(files)
    assert probabilities.shape == (len(files), len(DOMAINS))
    np.testing.assert_allclose(probabilities.sum(1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(probabilities.argmax(1), trained.predict(files))


def test_below_the_threshold_it_refuses_to_judge(trained: dc.DomainClassifier, data: Path) -> None:
    weak = dc.DomainClassifier(trained.config, trained.net, 0.979, 60)
    image = images.load(images.list_images(data / "val" / "square")[0])
    with pytest.raises(DataError, match="0.979.*below 0.98"):
        weak.predict([image])
    with pytest.raises(DataError, match="below 0.98"):
        dc.translation_domain_accuracy(_Oracle(data, 1), data, weak)
    ok = dc.DomainClassifier(trained.config, trained.net, 0.98, 60)
    assert ok.predict([image]).shape == (1,)


def test_save_load_round_trip_and_tampering(trained: dc.DomainClassifier, data: Path, tmp_path: Path) -> None:
    judge = dc.DomainClassifier(trained.config, trained.net, 0.99, 60, trained.history)
    out = judge.save(tmp_path / "judge")
    assert sorted(p.name for p in out.iterdir()) == [dc.META, dc.WEIGHTS]
    again = dc.load_domain_classifier(out)
    assert again.config == judge.config and again.val_accuracy == 0.99 and again.history == judge.history
    x = [images.load(f) for f in images.list_images(data / "val")]
    np.testing.assert_array_equal(again.predict(x), judge.predict(x))
    with pytest.raises(InputError, match="exists"):
        judge.save(out)
    meta = json.loads((out / dc.META).read_text())
    (out / dc.META).write_text(json.dumps({**meta, "config": {**meta["config"], "depth": 3}}))
    with pytest.raises(InputError, match="depth"):
        dc.load_domain_classifier(out)
    (out / dc.META).write_text(json.dumps(meta))
    (out / dc.WEIGHTS).write_bytes((out / dc.WEIGHTS).read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(InputError, match="sha256"):
        dc.load_domain_classifier(out)


@dataclass
class _Result:
    images: np.ndarray  # [S, num, H, W, 3]


class _Oracle:
    """A stand-in translator: 'translating' to a domain returns real images of it (or the sources, if lazy)."""

    domains = DOMAINS

    def __init__(self, data: Path, num: int, lazy: bool = False) -> None:
        self.data, self.num, self.lazy = data, num, lazy

    def translate(self, sources: list[np.ndarray], domain: str, num: int, seed: int) -> _Result:
        assert num == self.num
        real = [images.load(f) for f in images.list_images(self.data / "val" / domain)]
        picked = sources if self.lazy else [real[i % len(real)] for i in range(len(sources))]
        return _Result(np.stack([np.stack([img] * num) for img in picked]))


def test_translation_domain_accuracy_counts_target_hits(trained: dc.DomainClassifier, data: Path) -> None:
    judge = dc.DomainClassifier(trained.config, trained.net, 0.99, 60)
    good = dc.translation_domain_accuracy(_Oracle(data, 2), data, judge, num=2, max_sources=5)
    lazy = dc.translation_domain_accuracy(_Oracle(data, 2, lazy=True), data, judge, num=2, max_sources=5)
    assert good.count == lazy.count == 3 * 2 * 5 * 2
    assert sorted(good.per_task) == sorted(f"{s}2{t}" for s in DOMAINS for t in DOMAINS if s != t)
    assert good.accuracy >= 0.85 and lazy.accuracy <= 0.15  # returning the source is not a translation
