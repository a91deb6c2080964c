"""Public corpora (CREMA-D, RAVDESS): labels from file names, the split by actor, the
errors naming the file at fault, and ``dnnrsa-train --corpus`` on small generated
corpora in each corpus's naming and container (RAVDESS .mp4, CREMA-D .flv)."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dnnrsa.bids_app.train_cli import CORPUS_LABELS, main
from dnnrsa.corpora import (
    STUDY_EMOTIONS,
    CorpusError,
    CorpusMissing,
    actor_split,
    corpus_validation,
    read_corpus,
)
from dnnrsa.demo.design import EMOTIONS, SAMPLE_RATE, SENTENCES
from dnnrsa.models import load_model
from dnnrsa.train import read_labels

from .conftest import shared_data

SEED, SIZE, FPS = 0, 64, 4  # 64-pixel frames, 12 frames a clip: small, and faces are found

RAVDESS_COLUMNS = [
    "file",
    "emotion",
    "identity",
    "gender",
    "sentence",
    "actor",
    "emotion_code",
    "modality",
    "channel",
    "intensity",
    "repetition",
]
CREMAD_COLUMNS = [
    "file",
    "emotion",
    "identity",
    "gender",
    "sentence",
    "actor",
    "emotion_code",
    "level",
]

# ------------------------------------------------------------------------ generated clips
#: Demo actor (index into IDENTITIES) drawn for each corpus actor, of the same gender
#: (demo actors alternate female, male; RAVDESS's odd actors are male).
FACES = {"01": 1, "02": 0, "03": 3, "04": 2, "1001": 1, "1002": 0, "1003": 3, "1004": 2}
#: What a clip of each emotion shows; the demo has no neutral or calm face and voice.
CONTENT = dict(zip(EMOTIONS, EMOTIONS, strict=True), neutral="sad", calm="sad")


@functools.cache
def _demo_actors() -> dict[int, tuple]:
    """The demo's actors (face and voice), from the demo's own clip jobs."""
    from dnnrsa.demo.clips import clip_jobs

    params = {"fps": FPS, "image_size": SIZE, "n_training_takes": 0}
    jobs, _ = clip_jobs(SEED, params, Path("stimuli"), Path("training"))
    return {job["key"][0]: job["actor"] for job in jobs}


@functools.cache
def _rendered(face: int, emotion: str, sentence: int) -> tuple[np.ndarray, np.ndarray]:
    """Frames and waveform of a clip of demo actor ``face`` speaking one sentence."""
    from dnnrsa.demo.clips import render_clip

    shown = CONTENT[emotion]
    key = (face, EMOTIONS.index(shown), sentence, 0)
    return render_clip(
        SEED,
        key,
        _demo_actors()[face],
        shown,
        SENTENCES[sentence],
        fps=FPS,
        image_size=SIZE,
    )


def _write(path: Path, actor: str, emotion: str, sentence: int, **codecs) -> None:
    from scipy.io import wavfile
    from scipy.signal import resample_poly

    from dnnrsa.stimuli import write_clip

    frames, audio = _rendered(FACES[actor], emotion, sentence)
    if path.suffix == ".wav":
        path.parent.mkdir(parents=True, exist_ok=True)
        wavfile.write(path, SAMPLE_RATE, (audio * 32767).astype(np.int16))
    elif path.suffix == ".flv":  # FLV carries MP3 at 11.025, 22.05 or 44.1 kHz only
        audio = resample_poly(audio, 441, 320).astype(np.float32)  # 16 kHz -> 22.05 kHz
        write_clip(path, frames, FPS, audio, 22050, threads=1, **codecs)
    else:
        write_clip(path, frames, FPS, audio, SAMPLE_RATE, threads=1, **codecs)


def _ravdess_clip(root: Path, name: str) -> Path:
    """Write a generated clip under its RAVDESS name (``Actor_XX/<name>``)."""
    from dnnrsa.corpora import RAVDESS_EMOTIONS

    _, _, emotion, _, statement, _, actor = Path(name).stem.split("-")
    path = root / f"Actor_{actor}" / name
    _write(path, actor, RAVDESS_EMOTIONS[emotion], int(statement) - 1)
    return path


def _cremad_clip(root: Path, name: str) -> Path:
    """Write a generated clip under its CREMA-D name: Sorenson H.263 and MP3 in FLV."""
    from dnnrsa.corpora import CREMAD_EMOTIONS

    actor, sentence, emotion, _ = Path(name).stem.split("_")
    path = root / "VideoFlash" / name
    _write(path, actor, CREMAD_EMOTIONS[emotion], ["DFA", "IEO"].index(sentence), **FLV)
    return path


FLV = {"video_codec": "flv", "audio_codec": "mp3"}


def _demographics(root: Path, sexes: dict[str, str]) -> None:
    """VideoDemographics.csv as CREMA-D writes it (text quoted, numbers not)."""
    lines = ['"ActorID","Age","Sex","Race","Ethnicity"']
    lines += [f'{a},30,"{s}","Unspecified","Not Hispanic"' for a, s in sexes.items()]
    (root / "VideoDemographics.csv").write_text("\n".join(lines) + "\n")


#: The Sex column of CREMA-D's VideoDemographics.csv, actors 1001-1091 in order.
CREMAD_SEXES = (
    "MFFFMFFFFF" "MFFMMMMFMF" "FMMFFMMFFF" "MMMMMMFMMM" "MMFMMFFMFM"
    "MFFFFFMFMF" "FMFMMMMMMM" "MFFFFFMFFM" "MFMFMMMMFM" "F"
)  # fmt: skip


def _names(root: Path, names) -> None:
    """Empty files under these names (labels come from names alone)."""
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


# ------------------------------------------------------------------------ labels
RAVDESS_NAMES = [
    "Actor_01/01-01-05-02-01-02-01.mp4",  # angry, strong, kids, 2nd repetition
    "Actor_02/01-01-08-01-02-01-02.mp4",  # surprised, normal, dogs
    "Actor_01/01-01-01-01-01-01-01.mp4",  # neutral
    "Actor_02/01-01-02-02-02-02-02.mp4",  # calm, strong
    "Actor_01/02-01-07-01-01-01-01.mp4",  # video only
    "Actor_01/03-01-04-01-01-01-01.wav",  # audio only
    "Actor_02/01-02-03-01-01-01-02.mp4",  # song
    "Actor_01/readme.txt",  # not a clip: ignored
]


def _ravdess_row(file, emotion, actor, sentence, code, intensity, repetition, modality="01"):
    return [
        file,
        emotion,
        f"actor{actor}",
        "male" if int(actor) % 2 else "female",
        sentence,
        actor,
        code,
        modality,
        "01",
        intensity,
        repetition,
    ]


def test_ravdess_labels_come_from_the_names(tmp_path):
    _names(tmp_path, RAVDESS_NAMES)
    angry = _ravdess_row(RAVDESS_NAMES[0], "angry", "01", "kids", "05", "strong", "02")
    surprised = _ravdess_row(RAVDESS_NAMES[1], "surprised", "02", "dogs", "08", "normal", "01")
    neutral = _ravdess_row(RAVDESS_NAMES[2], "neutral", "01", "kids", "01", "normal", "01")
    calm = _ravdess_row(RAVDESS_NAMES[3], "calm", "02", "dogs", "02", "strong", "02")

    def expected(*rows):
        return pd.DataFrame(sorted(rows), columns=RAVDESS_COLUMNS)

    # default: audio-visual speech, the study's six emotions (neutral and calm dropped)
    table = read_corpus(tmp_path, "ravdess")
    pd.testing.assert_frame_equal(table, expected(angry, surprised))
    assert all(isinstance(v, str) for v in table.to_numpy().ravel())
    # keep neutral; calm as a class of its own, or merged with neutral
    table = read_corpus(tmp_path, "ravdess", emotions=[*STUDY_EMOTIONS, "neutral"])
    pd.testing.assert_frame_equal(table, expected(angry, surprised, neutral))
    table = read_corpus(tmp_path, "ravdess", emotions="all")
    pd.testing.assert_frame_equal(table, expected(angry, surprised, neutral, calm))
    merged = [*calm[:1], "neutral", *calm[2:]]
    table = read_corpus(tmp_path, "ravdess", emotions="all", calm="neutral")
    pd.testing.assert_frame_equal(table, expected(angry, surprised, neutral, merged))
    # one intensity
    table = read_corpus(tmp_path, "ravdess", emotions="all", intensity=["strong"])
    pd.testing.assert_frame_equal(table, expected(angry, calm))
    # other modalities and the song channel
    video = read_corpus(tmp_path, "ravdess", modality="video")
    assert list(video["file"]) == [RAVDESS_NAMES[4]] and list(video["modality"]) == ["02"]
    audio = read_corpus(tmp_path, "ravdess", modality="audio")
    assert list(audio["file"]) == [RAVDESS_NAMES[5]] and list(audio["emotion"]) == ["sad"]
    song = read_corpus(tmp_path, "ravdess", channel="song")
    assert list(song["file"]) == [RAVDESS_NAMES[6]] and list(song["channel"]) == ["02"]
    with pytest.raises(ValueError, match=r"emotions \['joy'\]"):
        read_corpus(tmp_path, "ravdess", emotions=["joy"])
    with pytest.raises(ValueError, match=r"intensity \['HI'\]"):
        read_corpus(tmp_path, "ravdess", intensity=["HI"])


def test_study_emotions_are_the_demo_study_emotions():
    assert STUDY_EMOTIONS == EMOTIONS


CREMAD_NAMES = [
    "VideoFlash/1001_DFA_ANG_XX.flv",
    "VideoFlash/1002_IEO_HAP_HI.flv",
    "VideoFlash/1003_TIE_SAD_LO.flv",
    "VideoFlash/1091_WSI_NEU_X.flv",
    "VideoFlash/notes.txt",  # not a clip: ignored
    "AudioWAV/1001_DFA_ANG_XX.wav",
]


def test_cremad_labels_come_from_the_names_and_the_demographics(tmp_path):
    _names(tmp_path, CREMAD_NAMES)
    _demographics(tmp_path, {"1001": "Male", "1002": "Female", "1003": "Female", "1091": "Male"})
    rows = [
        [CREMAD_NAMES[0], "angry", "actor1001", "male", "DFA", "1001", "ANG", "XX"],
        [CREMAD_NAMES[1], "happy", "actor1002", "female", "IEO", "1002", "HAP", "HI"],
        [CREMAD_NAMES[2], "sad", "actor1003", "female", "TIE", "1003", "SAD", "LO"],
        [CREMAD_NAMES[3], "neutral", "actor1091", "male", "WSI", "1091", "NEU", "X"],
    ]
    table = read_corpus(tmp_path, "cremad")  # neutral kept: CREMA-D's six emotions
    pd.testing.assert_frame_equal(table, pd.DataFrame(rows, columns=CREMAD_COLUMNS))
    table = read_corpus(tmp_path, "cremad", emotions=STUDY_EMOTIONS[:5], intensity=["XX", "HI"])
    assert list(table["file"]) == CREMAD_NAMES[:2]
    audio = read_corpus(tmp_path, "cremad", modality="audio")
    assert list(audio["file"]) == [CREMAD_NAMES[5]] and list(audio["gender"]) == ["male"]
    with pytest.raises(ValueError, match="surprised"):
        read_corpus(tmp_path, "cremad", emotions=["surprised"])  # CREMA-D has none
    with pytest.raises(ValueError, match="modality"):
        read_corpus(tmp_path, "cremad", modality="video")


def test_real_ravdess_audio_names(tmp_path):
    root = shared_data("ravdess")
    table = read_corpus(root, "ravdess", modality="audio")
    assert len(table) == 96  # 2 actors x 6 emotions x 2 intensities x 2 statements x 2
    assert table.groupby("actor")["gender"].first().to_dict() == {"01": "male", "02": "female"}
    assert sorted(table["emotion"].unique()) == sorted(STUDY_EMOTIONS)
    every = read_corpus(root, "ravdess", modality="audio", emotions="all")
    assert len(every) == 120 and (every["emotion"] == "neutral").sum() == 8


# ------------------------------------------------------------------------ split
def test_actor_split_holds_out_actors_of_both_genders(tmp_path):
    _names(tmp_path, [f"Actor_{a:02d}/01-01-05-01-01-01-{a:02d}.mp4" for a in range(1, 25)])
    table = read_corpus(tmp_path, "ravdess")
    assert actor_split(table) == ["21", "22", "23", "24"]
    assert actor_split(table, fraction=0.5) == [f"{a:02d}" for a in range(13, 25)]
    assert actor_split(table, actors=["3", "04"]) == ["03", "04"]
    with pytest.raises(ValueError, match="leave no male actor"):
        actor_split(table, actors=[f"{a:02d}" for a in range(1, 25, 2)])
    with pytest.raises(ValueError, match="'25'"):
        actor_split(table, actors=["25"])

    cremad = tmp_path / "cremad"
    actors = range(1001, 1092)
    sexes = {
        str(a): {"M": "Male", "F": "Female"}[s] for a, s in zip(actors, CREMAD_SEXES, strict=True)
    }
    assert CREMAD_SEXES.count("M") == 48 and CREMAD_SEXES.count("F") == 43
    _names(cremad, [f"VideoFlash/{a}_IEO_ANG_HI.flv" for a in actors])
    _demographics(cremad, sexes)
    table = read_corpus(cremad, "cremad")
    held = actor_split(table)  # the 10 male and 9 female actors with the highest IDs
    assert held == ["1071", *map(str, range(1074, 1092))]
    train = set(table["actor"]) - set(held)
    assert len(train) == 91 - 19 and not train & set(held)
    for actor_set in (train, held):
        assert set(table.loc[table["actor"].isin(actor_set), "gender"]) == {"female", "male"}
    two = pd.concat([table, table.assign(sentence="WSI")])
    columns, values = corpus_validation(two, ["emotion", "identity"], held)
    assert columns == {"emotion": "actor", "identity": "sentence"}
    assert values == {"actor": held, "sentence": ["WSI"]}  # the last in sorted order
    chosen = corpus_validation(two, ["identity"], held, identity_sentence="IEO")
    assert chosen == ({"identity": "sentence"}, {"sentence": ["IEO"]})
    assert corpus_validation(table, ["identity"], held)[0] == {"identity": None}  # one sentence
    with pytest.raises(ValueError, match="identity_sentence 'TIE'"):
        corpus_validation(two, ["identity"], held, identity_sentence="TIE")


# ------------------------------------------------------------------------ errors
def _run(capsys, *argv) -> tuple[int, str, str]:
    """Exit code, standard error and standard output of ``dnnrsa-train``."""
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.err, captured.out


def test_a_misnamed_file_is_named(tmp_path, capsys):
    out = ["--output-dir", tmp_path / "out"]
    ravdess = tmp_path / "ravdess"
    _names(ravdess, [RAVDESS_NAMES[0], "Actor_01/01-01-05-01-01-01.mp4"])
    with pytest.raises(CorpusError, match="01-01-05-01-01-01.mp4") as err:
        read_corpus(ravdess, "ravdess")
    assert err.value.path == ravdess / "Actor_01/01-01-05-01-01-01.mp4"
    code, message, _ = _run(capsys, "--corpus", "ravdess", ravdess, *out)
    assert code == 64 and "misnamed RAVDESS file" in message and "01-01-05-01-01-01.mp4" in message
    (ravdess / "Actor_01/01-01-05-01-01-01.mp4").unlink()
    _names(ravdess, ["Actor_01/01-01-05-01-01-01-02.mp4"])  # in another actor's folder
    code, message, _ = _run(capsys, "--corpus", "ravdess", ravdess, *out)
    assert code == 64 and "01-01-05-01-01-01-02.mp4" in message and "folder's" in message
    (ravdess / "Actor_01/01-01-05-01-01-01-02.mp4").unlink()
    _names(ravdess, ["Actor_1/01-01-05-01-01-01-01.mp4"])
    code, message, _ = _run(capsys, "--corpus", "ravdess", ravdess, *out)
    assert code == 64 and "Actor_1" in message

    cremad = tmp_path / "cremad"
    _names(cremad, [CREMAD_NAMES[0], "VideoFlash/1001_DFA_ANGRY_XX.flv"])
    _demographics(cremad, {"1001": "Male"})
    code, message, _ = _run(capsys, "--corpus", "cremad", cremad, *out)
    assert code == 64 and "1001_DFA_ANGRY_XX.flv" in message
    assert not (tmp_path / "out").exists()  # nothing written before the corpus is read


def test_missing_demographics_and_actors_are_named(tmp_path, capsys):
    out = ["--output-dir", tmp_path / "out"]
    cremad = tmp_path / "cremad"
    _names(cremad, CREMAD_NAMES[:2])
    with pytest.raises(CorpusMissing) as err:
        read_corpus(cremad, "cremad")
    assert err.value.path == cremad / "VideoDemographics.csv"
    code, message, _ = _run(capsys, "--corpus", "cremad", cremad, *out)
    assert code == 66 and "VideoDemographics.csv not found" in message
    _demographics(cremad, {"1001": "Male"})
    code, message, _ = _run(capsys, "--corpus", "cremad", cremad, *out)
    assert code == 64 and "actor 1002" in message and "VideoDemographics.csv" in message
    assert "1002_IEO_HAP_HI.flv" in message
    pd.DataFrame({"ActorID": ["1001"], "Age": ["30"]}).to_csv(cremad / "VideoDemographics.csv")
    code, message, _ = _run(capsys, "--corpus", "cremad", cremad, *out)
    assert code == 64 and "lacks the columns ['Sex']" in message
    # a clone without git-lfs: pointers in place of the clips
    _demographics(cremad, {"1001": "Male", "1002": "Female"})
    pointer = "version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 12\n"
    (cremad / CREMAD_NAMES[0]).write_text(pointer)
    code, message, _ = _run(capsys, "--corpus", "cremad", cremad, *out)
    assert code == 66 and "1001_DFA_ANG_XX.flv is a Git LFS pointer" in message


def test_a_folder_that_is_not_the_corpus_is_refused(tmp_path, capsys):
    out = ["--output-dir", tmp_path / "out"]
    ravdess = tmp_path / "ravdess"
    _names(ravdess, RAVDESS_NAMES[:2])
    code, message, _ = _run(capsys, "--corpus", "cremad", ravdess, *out)
    assert code == 64 and "is not a CREMA-D folder" in message and "VideoFlash" in message
    assert "looks like RAVDESS" in message
    code, message, _ = _run(capsys, "--corpus", "ravdess", tmp_path, *out)  # one level up
    assert code == 64 and "is not a RAVDESS folder" in message and "Actor_01" in message
    assert f"{ravdess} holds Actor_XX folders" in message
    code, message, _ = _run(capsys, "--corpus", "ravdess", tmp_path / "nowhere", *out)
    assert code == 66 and "nowhere" in message
    zipped = tmp_path / "zipped"
    _names(zipped, ["Video_Speech_Actor_01.zip"])
    code, message, _ = _run(capsys, "--corpus", "ravdess", zipped, *out)
    assert code == 66 and "extract" in message
    # the audio-only corpus read as audio-visual: the message says what is there
    audio = tmp_path / "audio"
    _names(audio, [RAVDESS_NAMES[5]])
    code, message, _ = _run(capsys, "--corpus", "ravdess", audio, *out)
    assert code == 64 and "--corpus-modality audio" in message


def test_corpus_options_are_checked(tmp_path, capsys):
    ravdess = tmp_path / "ravdess"
    _names(ravdess, [f"Actor_{a:02d}/01-01-05-01-01-01-{a:02d}.mp4" for a in range(1, 5)])
    out = ["--output-dir", tmp_path / "out"]
    corpus = ["--corpus", "ravdess", ravdess]
    assert _run(capsys, *corpus)[0] == 64  # no --output-dir
    assert _run(capsys, "--corpus", "crema", ravdess, *out)[0] == 64  # unknown corpus
    code, message, _ = _run(capsys, ravdess, ravdess / "labels.tsv", *corpus, *out)  # a mix
    assert code == 64 and "either --corpus" in message
    assert _run(capsys, *corpus, *out, "--validation-column", "sentence")[0] == 64
    code, message, _ = _run(
        capsys, ravdess, "x.tsv", "--regime", "emotion", "--corpus-emotions", "sad"
    )
    assert code == 64 and "--corpus-emotions apply to --corpus only" in message
    assert _run(capsys, *corpus, *out, "--corpus-emotions", "joy")[0] == 64
    assert _run(capsys, *corpus, *out, "--corpus-validation-fraction", "1.5")[0] == 64
    code, message, _ = _run(capsys, *corpus, *out, "--regime", "emotion", "mood")
    assert code == 64 and "--regime mood: not a label" in message
    code, message, _ = _run(capsys, *corpus, *out, "--corpus-validation-actors", "1", "3")
    assert code == 64 and "leave no male actor" in message
    assert _run(capsys)[0] == 64  # neither form
    assert not (tmp_path / "out" / "emotion.pt").exists()


# ------------------------------------------------------------------------ training
def _ravdess_training_corpus(root: Path) -> list[str]:
    """4 actors x 2 emotions x 2 statements of audio-visual speech, and clips that the
    default selection drops (neutral, calm, song, audio only)."""
    kept = [
        f"01-01-{emotion}-01-{statement}-01-{actor}.mp4"
        for actor in ("01", "02", "03", "04")
        for emotion in ("03", "05")
        for statement in ("01", "02")
    ]
    dropped = [
        "01-01-01-01-01-01-01.mp4",
        "01-01-02-01-02-01-02.mp4",
        "01-02-03-01-01-01-03.mp4",
        "03-01-05-01-01-01-04.wav",
    ]
    for name in kept + dropped:
        _ravdess_clip(root, name)
    return sorted(f"Actor_{name[-6:-4]}/{name}" for name in kept)


def test_ravdess_corpus_trains_the_four_regimes(tmp_path, capsys):
    from dnnrsa.faces import resolve_crops

    root = tmp_path / "ravdess"
    kept = _ravdess_training_corpus(root)
    out = tmp_path / "networks"
    args = ["--corpus", "ravdess", root, "--output-dir", out, "--epochs", "1"]
    args += ["--batch-size", "4", "--no-progress", "--device", "cpu"]
    code, err, printed = _run(capsys, *args)
    assert code == 0, err
    table = read_labels(out / CORPUS_LABELS)
    assert list(table["file"]) == kept
    pd.testing.assert_frame_equal(table, read_corpus(root, "ravdess"))
    held = ["03", "04"]  # one actor of each gender
    for regime in ("emotion", "identity", "gender", "sentence"):
        _, _, info = load_model(checkpoint=out / f"{regime}.pt")
        extra = info["extra"]
        assert info["regime"] == regime
        assert info["labels"] == sorted(table[regime].unique())
        assert extra["face_crop"] == "auto" and len(extra["history"]) == 1
        if regime == "identity":  # an unseen actor would be an unseen class
            assert extra["validation_column"] == "sentence"
            assert extra["validation_values"] == ["kids"]
        else:
            assert extra["validation_column"] == "actor" and extra["validation_values"] == held
    assert printed.count("wrote ") == 4 and "16 clips of 4 actors" in printed
    train = set(table.loc[~table["actor"].isin(held), "actor"])
    assert train == {"01", "02"} and not train & set(held)
    # the generated faces are found by the detector
    crops = resolve_crops([root / f for f in table["file"]], "auto")
    assert all(c.source == "detected" for c in crops)


def test_cremad_flv_corpus_trains(tmp_path, capsys):
    from dnnrsa.faces import resolve_crops

    root = tmp_path / "CREMA-D"
    names = [
        f"{actor}_{sentence}_{emotion}_XX.flv"
        for actor in ("1001", "1002", "1003", "1004")
        for sentence in ("DFA", "IEO")
        for emotion in ("ANG", "HAP")
    ]
    for name in names:
        _cremad_clip(root, name)
    _demographics(root, {"1001": "Male", "1002": "Female", "1003": "Male", "1004": "Female"})
    out = tmp_path / "networks"
    args = ["--corpus", "cremad", root, "--output-dir", out, "--regime", "emotion", "identity"]
    args += ["--epochs", "1", "--batch-size", "4", "--no-progress", "--device", "cpu"]
    code, err, _ = _run(capsys, *args)
    assert code == 0, err
    table = read_labels(out / CORPUS_LABELS)
    assert list(table["file"]) == [f"VideoFlash/{n}" for n in sorted(names)]
    _, _, info = load_model(checkpoint=out / "emotion.pt")
    assert info["labels"] == ["angry", "happy"] and info["extra"]["face_crop"] == "auto"
    assert info["extra"]["validation_values"] == ["1003", "1004"]
    _, _, info = load_model(checkpoint=out / "identity.pt")
    assert info["labels"] == ["actor1001", "actor1002", "actor1003", "actor1004"]
    assert info["extra"]["validation_values"] == ["IEO"]
    crops = resolve_crops([root / f for f in table["file"]], "auto")
    assert all(c.source == "detected" for c in crops)
