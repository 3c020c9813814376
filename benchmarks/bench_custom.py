"""Custom models on a domain the default model never saw: held-out UAR and training time.

Simulation: RAVDESS clips of a few emotions, renamed to a user's label set (default
calm=calm, frustrated=disgust, angry=angry), every clip put through a degradation absent from
the default model's training (default ``amr:4.75``, AMR-NB at its lowest rate) and written
to a temporary folder as the user's files. ``--per-class`` clips per label from the training
actors train a custom model (``core.custom.train_custom``, recipe ``--preset``); every clip of
the other actors is the held-out set. Repeated ``--repeats`` times with other training clips.
Also prints the default model's UAR on the same held-out clips (its argmax restricted to the
source emotions, renamed), and the wall time of ``train_custom`` on ``--timing-clips`` clips
from an empty feature cache (featurize, split, learning curve, comparison, final refit).

Caveat: the default model (whisper8) was trained on all 24 RAVDESS actors' clips, so it
knows these speakers and sentences; only the degradation and the label names are new to it.
So the benchmark also fits a base model of the same recipe on the training actors alone (all
eight emotions, clean plus ``--base-augment`` copies; the default had more kinds) and scores
it on the same held-out clips: a default model that never heard the test speakers.

    python benchmarks/bench_custom.py --data ../shared/data/ravdess --jobs 2
    python benchmarks/bench_custom.py --data ../shared/data/ravdess --preset emo-band-kdv-mlp5-temp
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from core.audio import load
from core.cache import file_sha256
from core.custom import train_custom
from core.custom_data import as_clips, featurize_clips
from core.datasets import Dataset, read_ravdess
from core.degrade import parse_degradation
from core.evaluation import score
from core.presets import DEFAULT_RECIPE
from core.registry import ModelRegistry
from core.training import train_model

SR = 16000


def _mapping(text: str) -> dict[str, str]:
    """``new=emotion,...`` -> {emotion: new}."""
    pairs = [p.split("=") for p in text.split(",")]
    return {emotion.strip(): new.strip() for new, emotion in pairs}


def degraded_clips(data: str, mapping: dict, spec: str, folder: Path) -> list[tuple]:
    """(path of the degraded copy, new label, speaker, emotion) for each mapped clip."""
    degrade, out = parse_degradation(spec), []
    for s in read_ravdess(data).samples:
        if s.label not in mapping:
            continue
        target = folder / f"{s.path.stem}.wav"
        if not target.exists():
            rng = np.random.default_rng(int(file_sha256(s.path)[:8], 16))
            sf.write(target, np.clip(degrade(load(s.path, sr=SR), SR, rng), -1, 1), SR)
        out.append((target, mapping[s.label], s.speaker, s.label))
    return out


def _pick(clips, per_class: int, rng) -> list[tuple]:
    labels = sorted({c[1] for c in clips})
    picked = []
    for label in labels:
        pool = [c for c in clips if c[1] == label]
        picked += [pool[i] for i in rng.choice(len(pool), per_class, replace=False)]
    return picked


def unseen_base(data: str, actors: int, preset: str, augment: list[str], cache_dir, jobs):
    """A base model of the default recipe that never heard the test actors: fitted on every
    clip (all emotions) of actors 1..``actors``, with one copy per ``augment`` spec."""
    ds = read_ravdess(data)
    ds = Dataset([s for s in ds.samples if int(s.speaker[5:]) <= actors], source=ds.source)
    return train_model(
        ds,
        name="base",
        preset=preset,
        augment=augment,
        cache_dir=cache_dir,
        n_jobs=jobs,
        progress=False,
    )


def base_uar(model, test, mapping: dict, cache_dir, jobs) -> float:
    """``model``'s UAR on ``test``, choosing among the source emotions (renamed)."""
    emotions = [e for e in mapping if e in model.labels]
    X, ok, _ = featurize_clips(
        as_clips([c[:3] for c in test]), model.feature_set, cache_dir=cache_dir, n_jobs=jobs
    )
    P = model.predict_proba(X)[:, [model.labels.index(e) for e in emotions]]
    names = np.array([mapping[e] for e in emotions])
    y = [c[1] for c, k in zip(test, ok, strict=True) if k]
    return score(y, names[P.argmax(axis=1)], tuple(sorted(set(names))))["uar"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="RAVDESS folder")
    ap.add_argument("--preset", default=DEFAULT_RECIPE)
    ap.add_argument(
        "--labels", default="calm=calm,frustrated=disgust,angry=angry", help="new=emotion pairs"
    )
    ap.add_argument("--degrade", default="amr:4.75")
    ap.add_argument("--train-actors", type=int, default=12, help="actors 1..N train, rest test")
    ap.add_argument("--per-class", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--timing-clips", type=int, default=100)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--base-augment",
        default="telephone",
        help="copies for the base model that never heard the test actors (comma-"
        "separated specs; '' = none; omit the base with --no-base)",
    )
    ap.add_argument(
        "--no-base", dest="base_augment", action="store_const", const=None, default="telephone"
    )
    args = ap.parse_args()
    mapping = _mapping(args.labels)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "audio").mkdir()
        clips = degraded_clips(args.data, mapping, args.degrade, tmp / "audio")
        is_train = lambda c: int(c[2][5:]) <= args.train_actors  # noqa: E731
        pool, test = [c for c in clips if is_train(c)], [c for c in clips if not is_train(c)]
        cache = tmp / "cache"
        print(
            f"preset {args.preset}; labels {args.labels}; test audio and training audio "
            f"{args.degrade}; {len(test)} held-out clips of actors > {args.train_actors}"
        )
        uars, comps = [], []
        for r in range(args.repeats):
            train = _pick(pool, args.per_class, np.random.default_rng(args.seed + r))
            result = train_custom(
                [c[:3] for c in train],
                name=f"bench{r}",
                recipe=args.preset,
                holdout=[c[:3] for c in test],
                seed=args.seed + r,
                models_dir=tmp / "models",
                cache_dir=cache,
                n_jobs=args.jobs,
                learning_curve_ks=(5, 10),
            )
            m = result.metrics
            curve = ", ".join(
                f"{p['clips_per_class']:g}: {p['uar']:.3f}" for p in m["learning_curve"]
            )
            comp = m["default_comparison"]
            comps.append((comp["custom"]["uar"], comp["default"]["uar"]))
            uars.append(m["uar"])
            print(
                f"repeat {r}: held-out UAR {m['uar']:.3f} (accuracy {m['accuracy']:.3f}); "
                f"curve {curve}; on {'/'.join(comp['shared_labels'])} only: custom "
                f"{comps[-1][0]:.3f}, default {comps[-1][1]:.3f}"
            )
        base = base_uar(ModelRegistry().load("default"), test, mapping, cache, args.jobs)
        print(
            f"custom model, {args.per_class} clips per label: held-out UAR "
            f"{np.mean(uars):.3f} ± {np.std(uars):.3f} over {args.repeats} repeats"
        )
        print(
            f"default model on the same held-out clips ({len(mapping)}-way among "
            f"{', '.join(mapping)}, renamed): UAR {base:.3f} (it was trained on RAVDESS)"
        )
        if args.base_augment is not None:
            augment = [a for a in args.base_augment.split(",") if a]
            model = unseen_base(
                args.data, args.train_actors, args.preset, augment, cache, args.jobs
            )
            unseen = base_uar(model, test, mapping, cache, args.jobs)
            print(
                f"the {args.preset} recipe fitted on all clips of actors 1-{args.train_actors} "
                f"(+ {'+'.join(augment) or 'no'} copies), same clips and choice: UAR {unseen:.3f}"
            )
        timing = _pick(
            pool, -(-args.timing_clips // len(set(mapping.values()))), np.random.default_rng(99)
        )[: args.timing_clips]
        start, cpu = time.perf_counter(), _cpu_s()
        train_custom(
            [c[:3] for c in timing],
            name="timing",
            recipe=args.preset,
            models_dir=tmp / "models",
            cache_dir=tmp / "cold",
            n_jobs=args.jobs,
        )
        print(
            f"train_custom on {len(timing)} clips (cold feature cache, 25 % held out, learning "
            f"curve, comparison, final refit): {time.perf_counter() - start:.1f} s wall, "
            f"{_cpu_s() - cpu:.1f} s CPU (this process and its workers; load average "
            f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"
        )


def _cpu_s() -> float:
    """CPU seconds of this process and its finished child processes."""
    own, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


if __name__ == "__main__":
    main()
