import filecmp

from cosmoflow.synth import generate


def test_generation_does_not_depend_on_worker_count(tmp_path):
    a = generate(tmp_path / "a", 32, 4, 2, progress=False, workers=1)
    b = generate(tmp_path / "b", 32, 4, 2, progress=False, workers=2)
    for split in ("train", "validation"):
        names = sorted(p.name for p in (a / split).iterdir())
        assert names == sorted(p.name for p in (b / split).iterdir())
        assert len(names) == (4 if split == "train" else 2)
        match, mismatch, errors = filecmp.cmpfiles(a / split, b / split, names, shallow=False)
        assert not mismatch and not errors
