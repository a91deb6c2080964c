"""The design of the demo study: actors, emotions, sentences, settings and the stimulus table."""

from __future__ import annotations

EMOTIONS = ("angry", "disgusted", "fearful", "happy", "sad", "surprised")
SENTENCES = ("sentence1", "sentence2")
GENDERS = ("female", "male", "female", "male", "female", "male")
IDENTITIES = tuple(f"actor{i + 1:02d}" for i in range(len(GENDERS)))
TASK = "emotion"
CLIP_DURATION_S = 3.0
SAMPLE_RATE = 16000
REGIONS = ("visual", "auditory", "crossmodal", "person")
#: Name of the negative-control region (no planted geometry) in ``derivatives/groundtruth``.
CONTROL = "control"
#: Size of the data set in each setting; :func:`dnnrsa.demo.make_demo_dataset` can
#: override n_subjects, n_runs, n_training_takes and voxel_size_mm one by one.
SETTINGS: dict[str, dict] = {
    "full": dict(
        n_subjects=3,
        n_runs=2,
        voxel_size_mm=4.0,
        image_size=128,
        fps=12,
        n_training_takes=5,
        tr_s=2.0,
        iti_range_s=(1.0, 3.0),
    ),
    "fast": dict(
        n_subjects=2,
        n_runs=2,
        voxel_size_mm=6.0,
        image_size=96,
        fps=12,
        n_training_takes=1,
        tr_s=2.0,
        iti_range_s=(0.5, 1.5),
    ),
}
LEAD_S = 8.0  # seconds before the first clip of a run
TAIL_S = 14.0  # seconds after the last clip of a run
# independent random streams: numpy.random.default_rng([seed, stream, ...])
STREAM_ACTOR, STREAM_CLIP, STREAM_SUBJECT, STREAM_RUN = 0, 1, 2, 3


def stimulus_table(take: int | None = None) -> list[dict[str, str]]:
    """The 72 stimuli (or one take of the training renditions), sorted by file name.

    Parameters
    ----------
    take : int or None
        None: the fMRI stimuli (``actor01_angry_sentence1.mp4``...); an integer >= 1:
        that training rendition (``actor01_angry_sentence1_take01.mp4``...).

    Returns
    -------
    list of dict
        Keys: file, identity, gender, emotion, sentence.
    """
    rows = []
    for identity, gender in zip(IDENTITIES, GENDERS, strict=True):
        for emotion in EMOTIONS:
            for sentence in SENTENCES:
                stem = f"{identity}_{emotion}_{sentence}"
                name = f"{stem}.mp4" if take is None else f"{stem}_take{take:02d}.mp4"
                rows.append(
                    dict(
                        file=name,
                        identity=identity,
                        gender=gender,
                        emotion=emotion,
                        sentence=sentence,
                    )
                )
    return sorted(rows, key=lambda r: r["file"])


def resolve_setting(setting: str, **overrides) -> dict:
    """The parameters of ``setting`` with the overrides that are not None, checked.

    Raises
    ------
    ValueError
        For an unknown setting or a value out of range (the message names it).
    """
    if setting not in SETTINGS:
        raise ValueError(f"setting must be one of {sorted(SETTINGS)}; got {setting!r}")
    params = dict(SETTINGS[setting])
    for key, value in overrides.items():
        if value is not None:
            params[key] = value
    for key in ("n_subjects", "n_runs"):
        if int(params[key]) < 1:
            raise ValueError(f"{key} must be at least 1; got {params[key]!r}")
    if int(params["n_training_takes"]) < 0:
        raise ValueError(
            f"n_training_takes must be non-negative; got {params['n_training_takes']!r}"
        )
    if int(params["image_size"]) < 32 or int(params["image_size"]) % 8:
        raise ValueError(
            f"image_size must be a multiple of 8, at least 32; got {params['image_size']!r}"
        )
    return params
